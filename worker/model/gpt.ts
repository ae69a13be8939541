/**
 * The GPT of the Python original ("rosellm"), on TensorFlow.js:
 *
 *   x = dropout(token_embedding[ids] + position_embedding[0..T))          [B*T, C]
 *   per block:  x = x + dropout(out_proj(attn(qkv_proj(ln1(x)))))         (attention.ts)
 *               x = x + dropout(fc2(gelu(fc1(ln2(x)))))
 *   logits = lm_head(ln_f(x))                                              [B, T, V]
 *   loss = cross-entropy(logits[:, :-1], labels[:, 1:]), mean over labels != -100
 *
 * Activations are kept 2-D ([B*T, C]) so every linear layer is one plain matMul. The loss only
 * runs the head on the rows it predicts (T-1 per sequence, minus ignored labels), which is the
 * same loss as the original's and saves the head's work on the other rows.
 *
 * A batch's checks, loss rows, constant tensors and dropout masks are in gpt_batch.ts (shared with
 * tp_gpt.ts).
 *
 * Memory: every method disposes what it creates (tf.tidy); `logits` hands its result to the caller.
 * Not re-entrant: one call at a time per model (tfjs runs synchronously anyway).
 */
import { RosedistError } from '../../shared/errors.js';
import { causalSelfAttention } from './attention.js';
import {
  buildParams,
  countParams,
  initialValues,
  numel,
  validateConfig,
  type GPTConfig,
  type GPTParams,
  type LayerNormParams,
  type LinearParams,
  type ParamSpec,
} from './params.js';
import { addPositions, crossEntropySum, gatherRows, gelu, layerNorm, linear } from './ops.js';
import { readInto, tensorOf, tf } from '../tf.js';
import type { Batch } from '../data/collate.js';
import { recordForward, type TapedForward } from './tape_backward.js';
import { batchTensors, checkBatch, disposeBatchTensors, IGNORE_INDEX, lossRows, type BatchTensors, type DropoutSite } from './gpt_batch.js';

export { countParams, IGNORE_INDEX, type Batch, type GPTConfig };

/** Where trainStepOverlapped reports the loss, then each parameter's final gradient range. */
export interface GradSink {
  loss(loss: number): void;
  ready(lo: number, hi: number): void;
}

export interface ModelParam {
  readonly name: string;
  readonly variable: tf.Variable;
  readonly shape: readonly number[];
  /** A linear layer's weight, held [in, out] (PyTorch: [out, in]). */
  readonly linear: boolean;
}

/** The model's parameters as typed blocks, bound once (the variables, seen as matrices and vectors). */
type Weights = GPTParams<tf.Tensor2D, tf.Tensor1D>;

const norm = (x: tf.Tensor2D, p: LayerNormParams<tf.Tensor1D>): tf.Tensor2D => layerNorm(x, p.weight, p.bias);
const dense = (x: tf.Tensor2D, p: LinearParams<tf.Tensor2D, tf.Tensor1D>): tf.Tensor2D => linear(x, p.weight, p.bias);

export class GPT {
  readonly config: GPTConfig;
  /** Fixed order: the original's state_dict keys ("token_embedding.weight", ...). */
  readonly params: readonly ModelParam[];
  readonly numParams: number;
  private readonly weights: Weights;

  /** Deterministic: the same config and seed give the same weights on every backend. */
  constructor(cfg: GPTConfig, seed: number) {
    validateConfig(cfg);
    this.config = { ...cfg };
    const params: ModelParam[] = [];
    // Called in state_dict order: parameter number params.length draws from its own init stream.
    const make = (spec: ParamSpec): tf.Tensor => {
      const initial = tf.tensor(initialValues(spec, params.length, seed), [...spec.shape], 'float32');
      const variable = tf.variable(initial, true); // shares initial's data; the name is made unique
      initial.dispose();
      params.push({ name: spec.name, variable, shape: spec.shape, linear: spec.linear === true });
      return variable;
    };
    this.weights = buildParams(
      cfg,
      (spec) => make(spec) as tf.Tensor2D,
      (spec) => make(spec) as tf.Tensor1D,
    );
    this.params = params;
    this.numParams = countParams(cfg);
  }

  /** Logits [B, T, V]; the caller disposes them. dropoutSeed makes dropout masks reproducible. */
  logits(batch: Batch, training: boolean, dropoutSeed?: number): tf.Tensor3D {
    checkBatch(batch, this.config, false);
    const { batchSize: B, seqLen: T } = batch;
    const seed = dropoutSeed ?? Math.floor(Math.random() * 2 ** 32);
    return tf.tidy(() => {
      const x = this.hidden(batchTensors(batch, this.config, training ? seed : undefined));
      return tf.reshape(this.head(x), [B, T, this.config.vocabSize]);
    });
  }

  /**
   * Forward + backward in train mode (dropout masks from dropoutSeed). Writes the gradient of the
   * MEAN loss (lossSum / tokens, as PyTorch's loss.backward()) into gradsOut (flat, numParams long,
   * param order) and returns that loss and the number of predicted tokens. With no predicted token
   * the loss is 0 and the gradient all zeros (PyTorch would give NaN). Backward walks the tape
   * (model/tape_backward.ts), freeing each node's activations as it goes: tf.variableGrads's
   * gradients bit for bit (`trainStepTfjs`), at a lower memory peak.
   */
  trainStep(batch: Batch, dropoutSeed: number, gradsOut: Float32Array): { loss: number; tokens: number } {
    const step = this.tapedStep(batch, dropoutSeed, gradsOut);
    if (step === undefined) return { loss: 0, tokens: 0 };
    const { offsets, taped, loss, tokens } = step;
    try {
      taped.backwardSync(
        this.params.map((p) => p.variable),
        (indices, grads) => indices.forEach((i, k) => this.copyGrad(i, grads[k] ?? null, offsets, gradsOut)),
      );
      return { loss, tokens };
    } finally {
      step.release();
    }
  }

  /**
   * trainStep with tfjs's own backward (tf.variableGrads), which holds every activation and
   * intermediate gradient until backprop ends: the reference trainStep is checked against
   * (tests, `npm run bench:backward`).
   */
  trainStepTfjs(batch: Batch, dropoutSeed: number, gradsOut: Float32Array): { loss: number; tokens: number } {
    const offsets = this.gradOffsets(gradsOut);
    const { rows, targets } = lossRows(batch, this.config);
    const tokens = rows.length;
    if (tokens === 0) {
      gradsOut.fill(0);
      return { loss: 0, tokens: 0 };
    }
    const variables = this.params.map((p) => p.variable);
    const loss = tf.tidy(() => {
      const inputs = batchTensors(batch, this.config, dropoutSeed);
      const rowIdx = tf.tensor1d(rows, 'int32');
      const { value, grads } = tf.variableGrads(() => this.meanLoss(inputs, rowIdx, targets, tokens), variables);
      this.params.forEach((p, i) => this.copyGrad(i, grads[p.variable.name] ?? null, offsets, gradsOut));
      return value.dataSync()[0] as number;
    });
    return { loss, tokens };
  }

  /**
   * trainStep with the gradients handed out as backward makes them (overlap: ddp_overlap.ts):
   * `sink.loss` gets the mean loss once the forward has run, then `sink.ready(lo, hi)` says that
   * gradsOut[lo, hi) (one parameter's flat range) is final, the LM head's first, the token
   * embedding's last; backward yields to the event loop between tape nodes (every `sliceMs` ms at
   * most, and after each ready) so that collectives started from `ready` move meanwhile. The same
   * gradients as trainStep, bit for bit (model/tape_backward.ts).
   */
  async trainStepOverlapped(batch: Batch, dropoutSeed: number, gradsOut: Float32Array, sink: GradSink, sliceMs = 2): Promise<{ loss: number; tokens: number }> {
    const step = this.tapedStep(batch, dropoutSeed, gradsOut);
    if (step === undefined) {
      sink.loss(0);
      sink.ready(0, this.numParams);
      return { loss: 0, tokens: 0 };
    }
    const { offsets, taped, loss, tokens } = step;
    try {
      try {
        sink.loss(loss);
      } catch (e) {
        taped.dispose();
        throw e;
      }
      await taped.backward(
        this.params.map((p) => p.variable),
        (indices, grads) => {
          indices.forEach((i, k) => {
            this.copyGrad(i, grads[k] ?? null, offsets, gradsOut);
            sink.ready(offsets[i] as number, (offsets[i] as number) + numel((this.params[i] as ModelParam).shape));
          });
        },
        sliceMs,
      );
      return { loss, tokens };
    } finally {
      step.release();
    }
  }

  /** Eval mode (no dropout), no gradients: summed cross-entropy over predicted tokens, and their count. */
  evalBatch(batch: Batch): { lossSum: number; tokens: number } {
    const { rows, targets } = lossRows(batch, this.config);
    if (rows.length === 0) return { lossSum: 0, tokens: 0 };
    const lossSum = tf.tidy(() => {
      const x = gatherRows(this.hidden(batchTensors(batch, this.config, undefined)), tf.tensor1d(rows, 'int32'));
      return crossEntropySum(this.head(x), targets).dataSync()[0] as number;
    });
    return { lossSum, tokens: rows.length };
  }

  /** Copy all parameters into a flat buffer (param order). */
  readFlat(out: Float32Array): void {
    this.checkFlat(out, 'readFlat');
    let offset = 0;
    for (const p of this.params) {
      readInto(p.variable, out, offset);
      offset += numel(p.shape);
    }
  }

  /** Assign all parameters from a flat buffer (copies: later writes to src do not reach the model). */
  writeFlat(src: Float32Array): void {
    this.checkFlat(src, 'writeFlat');
    this.writeRange(src, 0, this.numParams);
  }

  /**
   * writeFlat for the parameters that lie wholly in src[lo, hi) (overlap: one reduced bucket,
   * which holds whole parameters; src is the whole flat buffer).
   */
  writeRange(src: Float32Array, lo: number, hi: number): void {
    this.checkFlat(src, 'writeRange');
    let offset = 0;
    for (const p of this.params) {
      const size = numel(p.shape);
      if (offset >= lo && offset + size <= hi) tf.tidy(() => p.variable.assign(tensorOf(src.subarray(offset, offset + size), p.shape)));
      offset += size;
    }
  }

  dispose(): void {
    for (const p of this.params) p.variable.dispose();
  }

  /** The mean loss over the predicted rows (the train step's forward; `inputs` from batchTensors). */
  private meanLoss(inputs: BatchTensors, rowIdx: tf.Tensor1D, targets: Int32Array, tokens: number): tf.Scalar {
    const logits = this.head(gatherRows(this.hidden(inputs), rowIdx));
    return tf.div(crossEntropySum(logits, targets), tokens) as tf.Scalar;
  }

  /**
   * The forward of trainStep and trainStepOverlapped: the gradient offsets (after checking
   * gradsOut), the mean loss with its tape recorded, and `release` for the batch's tensors, which
   * outlive the forward's tidy (backward reads them). undefined, with gradsOut zeroed, when the
   * batch predicts no token.
   */
  private tapedStep(
    batch: Batch,
    dropoutSeed: number,
    gradsOut: Float32Array,
  ): { offsets: number[]; taped: TapedForward; loss: number; tokens: number; release: () => void } | undefined {
    const offsets = this.gradOffsets(gradsOut);
    const { rows, targets } = lossRows(batch, this.config);
    const tokens = rows.length;
    if (tokens === 0) {
      gradsOut.fill(0);
      return undefined;
    }
    const inputs = batchTensors(batch, this.config, dropoutSeed);
    const rowIdx = tf.tensor1d(rows, 'int32');
    const release = () => {
      rowIdx.dispose();
      disposeBatchTensors(inputs);
    };
    let taped: TapedForward | undefined;
    try {
      taped = this.recordLoss(inputs, rowIdx, targets, tokens);
      return { offsets, taped, loss: taped.y.dataSync()[0] as number, tokens, release };
    } catch (e) {
      taped?.dispose();
      release();
      throw e;
    }
  }

  /** meanLoss run with its tape recorded, for a backward by model/tape_backward.ts. */
  private recordLoss(inputs: BatchTensors, rowIdx: tf.Tensor1D, targets: Int32Array, tokens: number): TapedForward {
    return recordForward(() => this.meanLoss(inputs, rowIdx, targets, tokens));
  }

  /** Where each parameter starts in a flat gradient buffer, after checking gradsOut's length. */
  private gradOffsets(gradsOut: Float32Array): number[] {
    if (gradsOut.length !== this.numParams) {
      throw new RosedistError(`trainStep: gradsOut has ${gradsOut.length} elements, the model ${this.numParams}`);
    }
    const offsets: number[] = [];
    let offset = 0;
    for (const p of this.params) {
      offsets.push(offset);
      offset += numel(p.shape);
    }
    return offsets;
  }

  /** Parameter i's gradient into its range of gradsOut (null: it does not reach the loss, zeros). */
  private copyGrad(i: number, g: tf.Tensor | null, offsets: readonly number[], gradsOut: Float32Array): void {
    const lo = offsets[i] as number;
    if (g === null) gradsOut.fill(0, lo, lo + numel((this.params[i] as ModelParam).shape));
    else readInto(g, gradsOut, lo);
  }

  /** Embeddings and blocks: [B*T, C], before the final LayerNorm. */
  private hidden(inputs: BatchTensors): tf.Tensor2D {
    const { dropMask } = inputs;
    const drop = (x: tf.Tensor2D, site: DropoutSite): tf.Tensor2D => (dropMask === undefined ? x : tf.mul(x, dropMask(site)));
    const w = this.weights;
    const tokens = gatherRows(w.tokenEmbedding, inputs.ids);
    let x = drop(addPositions(tokens, w.positionEmbedding, inputs.shape.batchSize), { kind: 'embeddings' });
    w.blocks.forEach((block, layer) => {
      const { qkvProj, outProj } = block.attn;
      const attnDrop = dropMask?.({ kind: 'attention_weights', layer }) as tf.Tensor3D | undefined;
      const attn = causalSelfAttention(norm(x, block.ln1), qkvProj.weight, qkvProj.bias, inputs.maskBias, attnDrop, inputs.shape);
      x = tf.add(x, drop(dense(attn, outProj), { kind: 'attention_output', layer }));
      const h = gelu(dense(norm(x, block.ln2), block.mlp.fc1));
      x = tf.add(x, drop(dense(h, block.mlp.fc2), { kind: 'mlp_output', layer }));
    });
    return x;
  }

  /** Final LayerNorm and the LM head: [n, C] → logits [n, V]. */
  private head(x: tf.Tensor2D): tf.Tensor2D {
    return linear(norm(x, this.weights.lnF), this.weights.lmHead);
  }

  private checkFlat(buf: Float32Array, what: string): void {
    if (buf.length !== this.numParams) {
      throw new RosedistError(`${what}: buffer has ${buf.length} elements, the model ${this.numParams}`);
    }
  }
}
