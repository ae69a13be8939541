/**
 * The GPT split over a tensor-parallel group (Megatron-LM), each rank holding its shards
 * (tp_shard.ts): per block, attention with n_heads/tp heads (qkv_proj column-parallel, out_proj
 * row-parallel) and the MLP (fc1 column-parallel, fc2 row-parallel); embeddings, LayerNorms and
 * the LM head replicated.
 *
 * The conjugate collectives (Megatron's f and g) around each parallel region
 *   u = ln(x)  →  f  →  partial = local columns … local rows  →  g  →  x + dropout(Σ partial + bias)
 *   f: forward identity,            backward all-reduce (sum) of du over the TP group
 *   g: forward all-reduce (sum),    backward identity
 * are NOT tfjs custom-gradient ops here, for one reason: tfjs runs a gradient synchronously
 * (tf.grads / variableGrads return tensors, not promises), and our collectives are asynchronous
 * (ZeroMQ I/O: awaiting them needs the event loop, which a synchronous gradFunc blocks). A
 * collective therefore cannot run inside a tape. Instead the step runs as synchronous tfjs
 * segments with the collectives between them, awaited:
 *   forward, per half-block (attention, MLP): segment "ln → column layer → … → row layer" gives
 *     this rank's partial sum [B*T, C]; g all-reduces it; segment "x + dropout(Σ + bias)";
 *     the input x of each half-block is kept (activation checkpointing);
 *   head: one tape (tf.valueAndGrads) of ln_f, lm_head and the loss gives dx of the last block;
 *   backward, per half-block in reverse: dropout's and the bias's gradients (replicated); then the
 *     parallel region is recomputed from the kept x on a tape (tf.grads with dy = the row layer's
 *     output gradient: g's backward is the identity) giving du (a partial: this rank's heads or
 *     MLP columns only) and the local weights' gradients; f's backward all-reduces du; then the
 *     LayerNorm's tape turns the whole du into dx and ln's gradients, and the residual adds dx.
 * Each segment is an ordinary tfjs function of tensors with the model's own custom ops (ops.ts,
 * attention.ts), so the arithmetic is the dense model's: with dropout 0 a TP rank computes the
 * same loss and, assembled, the same gradients as the dense GPT, up to float32 rounding of the
 * partial sums. The cost of the design is one extra forward of each parallel region (recomputed
 * in backward); what it saves is every activation of those regions between forward and backward.
 *
 * Replicated parameters get identical gradients on every TP rank (their inputs are all-reduced
 * results, bit-identical everywhere), so they need no TP reduction; the trainer averages every
 * gradient over the DP group only.
 *
 * Dropout (Megatron's RNG tracker): outside the parallel regions (embeddings, attention output,
 * MLP output) every TP rank draws the dense model's masks from the same stream; inside (the
 * attention weights of this rank's heads) each TP rank has a stream of its own.
 */
import { RosedistError } from '../../shared/errors.js';
import type { ProcessGroup } from '../comm/process_group.js';
import type { Batch } from '../data/collate.js';
import { streamSeed } from '../rng.js';
import { tf } from '../tf.js';
import { attentionMaskBias, causalSelfAttention, type AttentionShape } from './attention.js';
import type { GPTConfig, ModelParam } from './gpt.js';
import { dropoutStream, lossRows, type DropoutSite } from './gpt_batch.js';
import { addPositions, crossEntropySum, dropoutMaskTensor, gatherRows, gelu, layerNorm, linear } from './ops.js';
import { buildParams, initialValues, numel, validateConfig, type GPTParams, type ParamSpec } from './params.js';
import { denseCount, localCount, localFromDense, shardPlan, type ShardedParam } from './tp_shard.js';

type T1 = tf.Tensor1D;
type T2 = tf.Tensor2D;
type Weights = GPTParams<T2, T1>;

/** One half-block: x + dropout(region(ln(x)) + bias). */
interface Half {
  readonly layer: number;
  readonly site: DropoutSite;
  readonly ln: { weight: T1; bias: T1 };
  /** The parallel region's local weights, in the order `region` takes them. */
  readonly local: readonly tf.Tensor[];
  readonly bias: T1;
}

/** A parallel region: this rank's partial sum [N, C] from u = ln(x) [N, C] and its local weights. */
type Region = (u: T2, weights: readonly tf.Tensor[], attnDrop: tf.Tensor3D | undefined) => T2;

export class TensorParallelGPT {
  readonly config: GPTConfig;
  readonly plan: readonly ShardedParam[];
  /** This rank's shards, dense names, local shapes, state_dict order. */
  readonly params: readonly ModelParam[];
  /** Elements of this rank's shards. */
  readonly numParams: number;
  /** Elements of the whole model. */
  readonly denseParams: number;
  private readonly weights: Weights;
  private readonly offsets = new Map<tf.Tensor, number>();
  private readonly tpSize: number;
  private readonly tpRank: number;

  /** Initial values are the dense model's (same seed), cut: a TP run starts where a dense one does. */
  constructor(
    cfg: GPTConfig,
    seed: number,
    private readonly tp: ProcessGroup,
  ) {
    validateConfig(cfg);
    this.config = { ...cfg };
    this.tpSize = tp.worldSize;
    this.tpRank = tp.rank;
    this.plan = shardPlan(cfg, this.tpSize);
    this.numParams = localCount(this.plan);
    this.denseParams = denseCount(this.plan);
    const params: ModelParam[] = [];
    let offset = 0;
    const make = (spec: ParamSpec): tf.Tensor => {
      const i = params.length;
      const p = this.plan[i];
      const local = new Float32Array(numel(p.local));
      localFromDense([p], this.tpSize, this.tpRank, initialValues(spec, i, seed), local);
      const variable = tf.variable(tf.tensor(local, [...p.local], 'float32'), true);
      params.push({ name: spec.name, variable, shape: p.local, linear: spec.linear === true });
      this.offsets.set(variable, offset);
      offset += local.length;
      return variable;
    };
    this.weights = buildParams(
      cfg,
      (s) => make(s) as T2,
      (s) => make(s) as T1,
    );
    this.params = params;
  }

  /**
   * Forward + backward (a collective of the TP group: every TP rank calls it with the same batch
   * and seed). Writes this rank's shard gradients of the mean loss into gradsOut ([numParams]).
   */
  async trainStep(batch: Batch, dropoutSeed: number, gradsOut: Float32Array): Promise<{ loss: number; tokens: number }> {
    if (gradsOut.length !== this.numParams)
      throw new RosedistError(`trainStep: gradsOut has ${gradsOut.length} elements, this rank's shards ${this.numParams}`);
    const { rows, targets } = lossRows(batch, this.config);
    gradsOut.fill(0);
    if (rows.length === 0) return { loss: 0, tokens: 0 };
    const tokens = rows.length;
    const keep: tf.Tensor[] = [];
    const kept = <X extends tf.Tensor>(t: X): X => {
      keep.push(t);
      return t;
    };
    try {
      const b = this.batchTensors(batch, dropoutSeed, kept);
      const halves = this.halves();
      const w = this.weights;
      // Forward: embeddings, then the half-blocks; xs[j] is the input of half-block j.
      let x = kept(tf.tidy(() => b.drop(addPositions(gatherRows(w.tokenEmbedding, b.ids), w.positionEmbedding, b.shape.batchSize), { kind: 'embeddings' })));
      const xs: T2[] = [];
      for (const h of halves) {
        xs.push(x);
        const partial = tf.tidy(() => this.region(h)(layerNorm(x, h.ln.weight, h.ln.bias), h.local, b.attnDrop(h)));
        const sum = await this.allReduce(partial);
        const xIn = x;
        x = kept(tf.tidy(() => tf.add(xIn, b.drop(tf.add(sum, h.bias), h.site)) as T2));
        sum.dispose();
      }
      // Head and loss: one tape, as the dense model's.
      const rowIdx = kept(tf.tensor1d(rows, 'int32'));
      const xLast = x;
      const [lossT, dxT, dg, db, dHead] = tf.tidy(() => {
        const f = (xf: tf.Tensor, g: tf.Tensor, bb: tf.Tensor, wh: tf.Tensor) =>
          tf.div(crossEntropySum(linear(layerNorm(gatherRows(xf as T2, rowIdx), g as T1, bb as T1), wh as T2), targets), tokens) as tf.Scalar;
        const { value, grads } = tf.valueAndGrads(f)([xLast, w.lnF.weight, w.lnF.bias, w.lmHead]);
        return [value, ...grads];
      });
      const loss = lossT.dataSync()[0] as number;
      lossT.dispose();
      this.writeGrads(gradsOut, [w.lnF.weight, dg], [w.lnF.bias, db], [w.lmHead, dHead]);
      let dx = dxT as T2;
      // Backward through the half-blocks.
      for (let j = halves.length - 1; j >= 0; j--) {
        const h = halves[j];
        const xIn = xs[j];
        const dxOut = dx;
        const [ds, dBias] = tf.tidy(() => {
          const d = b.dropGrad(dxOut, h.site);
          return [d, tf.sum(d, 0)];
        });
        this.writeGrads(gradsOut, [h.bias, dBias]);
        const region = this.region(h);
        const attnDrop = b.attnDrop(h);
        const [duPartial, ...dLocal] = tf.tidy(() => {
          const u = layerNorm(xIn, h.ln.weight, h.ln.bias);
          return tf.grads((...a: tf.Tensor[]) => region(a[0] as T2, a.slice(1), attnDrop))([u, ...h.local], ds);
        });
        ds.dispose();
        this.writeGrads(gradsOut, ...h.local.map((t, i) => [t, dLocal[i]] as [tf.Tensor, tf.Tensor]));
        const du = await this.allReduce(duPartial as T2); // f's backward
        const [dxLn, dg1, db1] = tf.tidy(() =>
          tf.grads((a: tf.Tensor, g: tf.Tensor, bb: tf.Tensor) => layerNorm(a as T2, g as T1, bb as T1))([xIn, h.ln.weight, h.ln.bias], du),
        );
        du.dispose();
        this.writeGrads(gradsOut, [h.ln.weight, dg1], [h.ln.bias, db1]);
        dx = tf.tidy(() => tf.add(dxOut, dxLn) as T2);
        dxOut.dispose();
        dxLn.dispose();
      }
      // Embeddings.
      const dx0 = dx;
      const [dTok, dPos] = tf.tidy(() => {
        const d = b.dropGrad(dx0, { kind: 'embeddings' });
        return tf.grads((t: tf.Tensor, p: tf.Tensor) => addPositions(gatherRows(t as T2, b.ids), p as T2, b.shape.batchSize))(
          [w.tokenEmbedding, w.positionEmbedding],
          d,
        );
      });
      dx0.dispose();
      this.writeGrads(gradsOut, [w.tokenEmbedding, dTok], [w.positionEmbedding, dPos]);
      return { loss, tokens };
    } finally {
      tf.dispose(keep);
    }
  }

  /** Eval mode: summed cross-entropy over predicted tokens and their count (a collective of the TP group). */
  async evalBatch(batch: Batch): Promise<{ lossSum: number; tokens: number }> {
    const { rows, targets } = lossRows(batch, this.config);
    if (rows.length === 0) return { lossSum: 0, tokens: 0 };
    const keep: tf.Tensor[] = [];
    const kept = <X extends tf.Tensor>(t: X): X => {
      keep.push(t);
      return t;
    };
    try {
      const b = this.batchTensors(batch, undefined, kept);
      const w = this.weights;
      let x = tf.tidy(() => addPositions(gatherRows(w.tokenEmbedding, b.ids), w.positionEmbedding, b.shape.batchSize));
      for (const h of this.halves()) {
        const xIn = x;
        const partial = tf.tidy(() => this.region(h)(layerNorm(xIn, h.ln.weight, h.ln.bias), h.local, undefined));
        const sum = await this.allReduce(partial);
        x = tf.tidy(() => tf.add(xIn, tf.add(sum, h.bias)) as T2);
        sum.dispose();
        xIn.dispose();
      }
      const xLast = x;
      const lossSum = tf.tidy(() => {
        const z = linear(layerNorm(gatherRows(xLast, tf.tensor1d(rows, 'int32')), w.lnF.weight, w.lnF.bias), w.lmHead);
        return crossEntropySum(z, targets).dataSync()[0] as number;
      });
      xLast.dispose();
      return { lossSum, tokens: rows.length };
    } finally {
      tf.dispose(keep);
    }
  }

  /** Copy this rank's shards into a flat buffer (plan order). */
  readFlat(out: Float32Array): void {
    if (out.length !== this.numParams) throw new RosedistError(`readFlat: buffer has ${out.length} elements, this rank's shards ${this.numParams}`);
    let offset = 0;
    for (const p of this.params) {
      out.set(p.variable.dataSync() as Float32Array, offset);
      offset += numel(p.shape);
    }
  }

  /** Assign this rank's shards from a flat buffer (copies). */
  writeFlat(src: Float32Array): void {
    if (src.length !== this.numParams) throw new RosedistError(`writeFlat: buffer has ${src.length} elements, this rank's shards ${this.numParams}`);
    let offset = 0;
    for (const p of this.params) {
      const size = numel(p.shape);
      tf.tidy(() => p.variable.assign(tf.tensor(src.slice(offset, offset + size), [...p.shape], 'float32')));
      offset += size;
    }
  }

  dispose(): void {
    for (const p of this.params) p.variable.dispose();
  }

  /** The half-blocks in forward order. */
  private halves(): Half[] {
    return this.weights.blocks.flatMap((blk, layer): Half[] => [
      {
        layer,
        site: { kind: 'attention_output', layer },
        ln: blk.ln1,
        local: [blk.attn.qkvProj.weight, blk.attn.qkvProj.bias, blk.attn.outProj.weight],
        bias: blk.attn.outProj.bias,
      },
      { layer, site: { kind: 'mlp_output', layer }, ln: blk.ln2, local: [blk.mlp.fc1.weight, blk.mlp.fc1.bias, blk.mlp.fc2.weight], bias: blk.mlp.fc2.bias },
    ]);
  }

  /** The parallel region of a half-block (column layer … row layer, no row bias). */
  private region(h: Half): Region {
    const { nHeads: H, dModel: C } = this.config;
    return h.site.kind === 'attention_output'
      ? (u, [wq, bq, wo], attnDrop) => {
          const B = this.shapeB;
          const shape: AttentionShape = { batchSize: B, seqLen: u.shape[0] / B, nHeads: H / this.tpSize, dHead: C / H };
          return linear(causalSelfAttention(u, wq as T2, bq as T1, this.maskBias!, attnDrop, shape), wo as T2);
        }
      : (u, [w1, b1, w2]) => linear(gelu(linear(u, w1 as T2, b1 as T1)), w2 as T2);
  }

  // The current batch's size and local attention mask (set by batchTensors; one step at a time).
  private shapeB = 1;
  private maskBias: tf.Tensor3D | undefined;

  /** Sum `t` over the TP group (disposes t); the result is a new tensor of its shape. */
  private async allReduce(t: T2): Promise<T2> {
    const buf = (t.dataSync() as Float32Array).slice();
    const shape = t.shape;
    t.dispose();
    await this.tp.allReduce(buf, 'sum');
    return tf.tensor2d(buf, shape);
  }

  /** Write each [parameter, gradient] into gradsOut at the parameter's offset; disposes the gradients. */
  private writeGrads(out: Float32Array, ...pairs: [tf.Tensor, tf.Tensor | undefined][]): void {
    for (const [param, grad] of pairs) {
      if (grad === undefined) continue;
      const offset = this.offsets.get(param)!;
      const g = grad.dataSync() as Float32Array;
      for (let i = 0; i < g.length; i++) out[offset + i] += g[i];
      grad.dispose();
    }
  }

  /** The batch's constant tensors (kept until the step ends) and its dropout masks. */
  private batchTensors(batch: Batch, dropoutSeed: number | undefined, kept: <X extends tf.Tensor>(t: X) => X) {
    const { batchSize: B, seqLen: T } = batch;
    const { nHeads: H, dModel: C, dropout: rate } = this.config;
    const Hl = H / this.tpSize;
    const shape: AttentionShape = { batchSize: B, seqLen: T, nHeads: Hl, dHead: C / H };
    this.shapeB = B;
    this.maskBias = kept(tf.tensor3d(attentionMaskBias(batch.attentionMask, shape), [B * Hl, T, T]));
    const on = dropoutSeed !== undefined && rate > 0;
    const masks = new Map<string, tf.Tensor>();
    const mask = (site: DropoutSite): tf.Tensor => {
      const key = JSON.stringify(site);
      let m = masks.get(key);
      if (m === undefined) {
        const dims = site.kind === 'attention_weights' ? [B * Hl, T, T] : [B * T, C];
        let seed32 = streamSeed(dropoutSeed!, dropoutStream(site));
        // Inside the parallel region: a stream per TP rank (its heads differ anyway).
        if (site.kind === 'attention_weights') seed32 = streamSeed(seed32, 0x7470 + this.tpRank);
        // Made lazily, possibly inside a segment's tidy: tf.keep, so that it lives until the step ends.
        m = kept(tf.keep(dropoutMaskTensor(dims, rate, seed32)));
        masks.set(key, m);
      }
      return m;
    };
    return {
      ids: kept(tf.tensor1d(batch.inputIds, 'int32')),
      shape,
      drop: (x: T2, site: DropoutSite): T2 => (on ? (tf.mul(x, mask(site)) as T2) : x),
      /** The gradient through dropout (a new tensor: the caller disposes it). */
      dropGrad: (dy: T2, site: DropoutSite): T2 => (on ? (tf.mul(dy, mask(site)) as T2) : tf.clone(dy)),
      attnDrop: (h: Half): tf.Tensor3D | undefined =>
        on && h.site.kind === 'attention_output' ? (mask({ kind: 'attention_weights', layer: h.layer }) as tf.Tensor3D) : undefined,
    };
  }
}
