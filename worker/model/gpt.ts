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
 * Memory: every method disposes what it creates (tf.tidy); `logits` hands its result to the caller.
 * Not re-entrant: one call at a time per model (tfjs runs synchronously anyway).
 */
import { RosedistError } from '../../shared/errors.js';
import { attentionMaskBias, causalSelfAttention, type AttentionShape } from './attention.js';
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
import { streamSeed } from '../rng.js';
import { addPositions, crossEntropySum, dropoutMaskTensor, gatherRows, gelu, layerNorm, linear } from './ops.js';
import { readInto, tensorOf, tf } from '../tf.js';
import type { Batch } from '../data/collate.js';
import { recordForward, type TapedForward } from './tape_backward.js';

export { countParams, type Batch, type GPTConfig };

/** Where trainStepOverlapped reports the loss, then each parameter's final gradient range. */
export interface GradSink {
  loss(loss: number): void;
  ready(lo: number, hi: number): void;
}

/** The label value that the loss skips, as PyTorch's cross_entropy ignore_index. */
export const IGNORE_INDEX = -100;

export interface ModelParam {
  readonly name: string;
  readonly variable: tf.Variable;
  readonly shape: readonly number[];
  /** A linear layer's weight, held [in, out] (PyTorch: [out, in]). */
  readonly linear: boolean;
}

/** The model's parameters as typed blocks, bound once (the variables, seen as matrices and vectors). */
type Weights = GPTParams<tf.Tensor2D, tf.Tensor1D>;

/**
 * Where dropout is applied, as in the original: the sum of the embeddings, and in each block the
 * attention weights (after softmax), the attention output and the MLP output.
 */
export type DropoutSite = { readonly kind: 'embeddings' } | { readonly kind: 'attention_weights' | 'attention_output' | 'mlp_output'; readonly layer: number };

/**
 * The key of a site's mask stream (streamSeed(dropoutSeed, key)). Fixed: changing a key changes the
 * numbers of every seeded run.
 */
export function dropoutStream(site: DropoutSite): number {
  switch (site.kind) {
    case 'embeddings':
      return 0;
    case 'attention_weights':
      return 3 * site.layer + 1;
    case 'attention_output':
      return 3 * site.layer + 2;
    case 'mlp_output':
      return 3 * site.layer + 3;
  }
}

/** The constant tensors of one batch: made before the taped function so they outlive backprop. */
interface BatchTensors {
  readonly ids: tf.Tensor1D; // [B*T] token ids
  readonly maskBias: tf.Tensor3D; // [B*H, T, T]
  /** A site's mask: [B*H, T, T] for attention weights, else [B*T, C]. Undefined: eval mode. */
  readonly dropMask: ((site: DropoutSite) => tf.Tensor) | undefined;
  readonly shape: AttentionShape;
}

const norm = (x: tf.Tensor2D, p: LayerNormParams<tf.Tensor1D>): tf.Tensor2D => layerNorm(x, p.weight, p.bias);
const dense = (x: tf.Tensor2D, p: LinearParams<tf.Tensor2D, tf.Tensor1D>): tf.Tensor2D => linear(x, p.weight, p.bias);

/** Rows of the flattened [B*T] positions whose next label is predicted, and those labels. */
export interface LossRows {
  readonly rows: Int32Array;
  readonly targets: Int32Array;
}

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
      const x = this.hidden(this.batchTensors(batch, training ? seed : undefined));
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
      const inputs = this.batchTensors(batch, dropoutSeed);
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
      const x = gatherRows(this.hidden(this.batchTensors(batch, undefined)), tf.tensor1d(rows, 'int32'));
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
    const inputs = this.batchTensors(batch, dropoutSeed);
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

  /** The batch's constant tensors; dropoutSeed undefined (or dropout 0) means no dropout. */
  private batchTensors(batch: Batch, dropoutSeed: number | undefined): BatchTensors {
    const { batchSize: B, seqLen: T } = batch;
    const { nHeads: H, dModel: C, dropout: rate } = this.config;
    const shape: AttentionShape = { batchSize: B, seqLen: T, nHeads: H, dHead: C / H };
    const dropMask =
      dropoutSeed === undefined || rate === 0
        ? undefined
        : (site: DropoutSite) => {
            const dims = site.kind === 'attention_weights' ? [B * H, T, T] : [B * T, C];
            return dropoutMaskTensor(dims, rate, streamSeed(dropoutSeed, dropoutStream(site)));
          };
    return {
      ids: tf.tensor1d(batch.inputIds, 'int32'),
      maskBias: tf.tensor3d(attentionMaskBias(batch.attentionMask, shape), [B * H, T, T]),
      dropMask,
      shape,
    };
  }

  private checkFlat(buf: Float32Array, what: string): void {
    if (buf.length !== this.numParams) {
      throw new RosedistError(`${what}: buffer has ${buf.length} elements, the model ${this.numParams}`);
    }
  }
}

/** The batch's constant tensors made outside a tidy (trainStepOverlapped); dropout masks are made inside. */
function disposeBatchTensors(inputs: BatchTensors): void {
  inputs.ids.dispose();
  inputs.maskBias.dispose();
}

/**
 * Positions t < T-1 whose label at t+1 is not ignored: rows b*T+t and their targets, after
 * checkBatch. GPT and TensorParallelGPT (tp_gpt.ts) compute their losses over these rows.
 */
export function lossRows(batch: Batch, config: GPTConfig): LossRows {
  checkBatch(batch, config, true);
  const { batchSize: B, seqLen: T, labels } = batch;
  const rows: number[] = [];
  const targets: number[] = [];
  for (let b = 0; b < B; b++) {
    for (let t = 0; t + 1 < T; t++) {
      const y = labels[b * T + t + 1] as number;
      if (y === IGNORE_INDEX) continue;
      rows.push(b * T + t);
      targets.push(y);
    }
  }
  return { rows: Int32Array.from(rows), targets: Int32Array.from(targets) };
}

/** One clear error for a malformed batch (bad ids would otherwise read garbage on wasm). */
export function checkBatch(batch: Batch, config: GPTConfig, withLabels: boolean): void {
  const { batchSize: B, seqLen: T } = batch;
  const { vocabSize: V, maxPositionEmbeddings: P } = config;
  if (!Number.isInteger(B) || B < 1 || !Number.isInteger(T) || T < 1) {
    throw new RosedistError(`batch: batchSize and seqLen must be positive integers, got ${B} and ${T}`);
  }
  if (T > P) {
    throw new RosedistError(`batch: seqLen ${T} exceeds maxPositionEmbeddings ${P}`, 'use --seq-len at most --max-position-embeddings');
  }
  const arrays: [string, Int32Array][] = [
    ['inputIds', batch.inputIds],
    ['attentionMask', batch.attentionMask],
  ];
  if (withLabels) arrays.push(['labels', batch.labels]);
  for (const [name, a] of arrays) {
    if (a.length !== B * T) throw new RosedistError(`batch: ${name} has ${a.length} elements, expected B*T = ${B * T}`);
  }
  const badId = batch.inputIds.findIndex((id) => id < 0 || id >= V);
  if (badId >= 0) {
    throw new RosedistError(
      `batch: inputIds[${badId}] = ${batch.inputIds[badId]} is outside the vocabulary [0, ${V})`,
      'check --vocab-size against the dataset',
    );
  }
  if (withLabels) {
    const badLabel = batch.labels.findIndex((y) => y !== IGNORE_INDEX && (y < 0 || y >= V));
    if (badLabel >= 0) {
      throw new RosedistError(`batch: labels[${badLabel}] = ${batch.labels[badLabel]} is neither ${IGNORE_INDEX} nor in [0, ${V})`);
    }
  }
}
