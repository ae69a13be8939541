/**
 * How tensor parallelism cuts the GPT's parameters (Megatron-LM's layout, as the Python
 * original's ColumnParallelLinear / RowParallelLinear): per block,
 *   attn.qkv_proj  column-parallel, no gather: rank r owns heads [r*H/tp, (r+1)*H/tp); its weight
 *                  [C, 3C/tp] is laid out [q_local | k_local | v_local] (columns r of each of q,
 *                  k and v), its bias [3C/tp] likewise;
 *   attn.out_proj  row-parallel: weight rows [r*C/tp, (r+1)*C/tp) (the inputs its heads feed),
 *                  bias whole (added once, after the all-reduce);
 *   mlp.fc1        column-parallel: weight columns and bias [r*F/tp, (r+1)*F/tp);
 *   mlp.fc2        row-parallel: weight rows [r*F/tp, (r+1)*F/tp), bias whole.
 * Embeddings, LayerNorms and the LM head are replicated. Weights are stored [in, out] (params.ts),
 * so "columns" are outputs and "rows" inputs.
 *
 * A rank's flat parameter buffer holds its shards in state_dict order under the dense names; the
 * functions below cut a dense flat buffer into a rank's and put the ranks' back together (for
 * checkpoints, which always hold whole weights).
 */
import { ConfigError } from '../../shared/errors.js';
import { buildParams, numel, type GPTConfig, type ParamSpec } from './params.js';

/** replicated; cols: the last axis cut in `parts` equal parts, each cut in tp pieces; rows: the first axis cut in tp pieces. */
export type Shard = { readonly kind: 'replicated' } | { readonly kind: 'cols'; readonly parts: number } | { readonly kind: 'rows' };

export interface ShardedParam {
  /** The dense parameter (name, whole shape, init). */
  readonly spec: ParamSpec;
  readonly shard: Shard;
  /** The shape of one rank's piece. */
  readonly local: readonly number[];
}

/** ConfigError unless tp divides n_heads and d_ff (then it also divides d_model). */
export function checkTensorParallel(cfg: GPTConfig, tp: number): void {
  if (cfg.nHeads % tp !== 0)
    throw new ConfigError(
      `--tensor-parallel-size ${tp} does not divide --n-heads ${cfg.nHeads}`,
      'each rank must own whole heads: pick a divisor of --n-heads',
    );
  if (cfg.dFf % tp !== 0) throw new ConfigError(`--tensor-parallel-size ${tp} does not divide --d-ff ${cfg.dFf}`, 'pick a divisor of --d-ff');
}

/** Every parameter with its cut, in state_dict order. */
export function shardPlan(cfg: GPTConfig, tp: number): ShardedParam[] {
  checkTensorParallel(cfg, tp);
  const specs: ParamSpec[] = [];
  const keep = (s: ParamSpec): ParamSpec => {
    specs.push(s);
    return s;
  };
  const tree = buildParams(cfg, keep, keep);
  const cuts = new Map<ParamSpec, Shard>();
  const q = { kind: 'cols', parts: 3 } as const;
  const col = { kind: 'cols', parts: 1 } as const;
  const row = { kind: 'rows' } as const;
  for (const b of tree.blocks) {
    cuts.set(b.attn.qkvProj.weight, q).set(b.attn.qkvProj.bias, q).set(b.attn.outProj.weight, row);
    cuts.set(b.mlp.fc1.weight, col).set(b.mlp.fc1.bias, col).set(b.mlp.fc2.weight, row);
  }
  return specs.map((spec) => {
    const shard = cuts.get(spec) ?? ({ kind: 'replicated' } as const);
    const s = spec.shape;
    const last = s.length - 1;
    const local = shard.kind === 'replicated' ? s : shard.kind === 'rows' ? [s[0] / tp, ...s.slice(1)] : [...s.slice(0, last), s[last] / tp];
    return { spec, shard, local };
  });
}

/** Copy rank r's piece of one dense parameter `dense` into `out` (or back, `toDense`). */
function copyPiece(p: ShardedParam, tp: number, r: number, dense: Float32Array, local: Float32Array, toDense: boolean): void {
  const move = (d: number, l: number, n: number): void => {
    if (toDense) dense.set(local.subarray(l, l + n), d);
    else local.set(dense.subarray(d, d + n), l);
  };
  const { shard, spec } = p;
  if (shard.kind === 'replicated') return move(0, 0, dense.length);
  if (shard.kind === 'rows') {
    const n = numel(p.local);
    return move(r * n, 0, n);
  }
  const cols = spec.shape[spec.shape.length - 1];
  const rows = dense.length / cols;
  const w = cols / (shard.parts * tp); // width of one piece
  for (let i = 0; i < rows; i++) {
    for (let part = 0; part < shard.parts; part++) move(i * cols + (part * tp + r) * w, (i * shard.parts + part) * w, w);
  }
}

/** Rank r's flat buffer (its pieces, plan order) from a dense flat buffer. */
export function localFromDense(plan: readonly ShardedParam[], tp: number, r: number, dense: Float32Array, out: Float32Array): void {
  let d = 0;
  let l = 0;
  for (const p of plan) {
    const dn = numel(p.spec.shape);
    const ln = numel(p.local);
    copyPiece(p, tp, r, dense.subarray(d, d + dn), out.subarray(l, l + ln), false);
    d += dn;
    l += ln;
  }
}

/** The dense flat buffer from every rank's flat buffer (indexed by TP rank). */
export function denseFromLocals(plan: readonly ShardedParam[], locals: readonly Float32Array[], out: Float32Array): void {
  const tp = locals.length;
  let d = 0;
  let l = 0;
  for (const p of plan) {
    const dn = numel(p.spec.shape);
    const ln = numel(p.local);
    for (let r = 0; r < tp; r++) copyPiece(p, tp, r, out.subarray(d, d + dn), locals[r].subarray(l, l + ln), true);
    d += dn;
    l += ln;
  }
}

export function localCount(plan: readonly ShardedParam[]): number {
  return plan.reduce((a, p) => a + numel(p.local), 0);
}

export function denseCount(plan: readonly ShardedParam[]): number {
  return plan.reduce((a, p) => a + numel(p.spec.shape), 0);
}
