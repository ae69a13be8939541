/**
 * What makes the training loop data-parallel, in the spirit of PyTorch's DDP:
 *   - `syncParams`: rank 0's parameters overwrite every replica at start, then every rank checks
 *     (all-gather of a checksum) that all replicas are identical;
 *   - `averageGradients`: the step buffer (grad_buffer.ts: gradients and loss in one flat array),
 *     pre-divided by the world size and summed by one all-reduce (the ring segments it; no
 *     per-tensor calls); with ZeRO (zero.ts), `averageGradientShards` instead: a reduce-scatter
 *     of the gradients, each rank averaging its shard only; with `--grad-compression` either
 *     crosses the wire at 16 bits (comm/ring_compressed.ts);
 *   - `rootDecides`: rank 0 runs something (read or write a checkpoint) and every rank learns the
 *     outcome, errors included, so a failure on rank 0 stops all ranks at once instead of leaving
 *     them waiting for a collective.
 * (A JSON value from every rank: `allGatherJson` in comm/process_group.ts.)
 * Every function here is a collective: all ranks call it, in the same order.
 */
import { createHash } from 'node:crypto';
import { CommError, ConfigError, FileError, RosedistError } from '../shared/errors.js';
import { broadcastJson, type ProcessGroup } from './comm/process_group.js';
import type { GradBuffer } from './grad_buffer.js';
import { findingAt, firstNonFinite, type LocalFinding } from './numerics.js';
import { shardRange } from './comm/chunks.js';
import { sharedReducer } from './comm/reduce.js';
import type { EmbeddingRows } from './ddp_sparse.js';
import type { Compression } from './comm/wire.js';
import type { GradCompression } from './config.js';

/** SHA-256 of a float buffer's bytes, as 4 float64 lanes (compared as bytes, never as values). */
function digest(buf: Float32Array): Float64Array {
  const h = createHash('sha256')
    .update(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength))
    .digest();
  return new Float64Array(new Uint8Array(h).buffer);
}

/** Broadcast rank 0's `params` to all ranks (in place), then verify all replicas are identical. */
export async function syncParams(pg: ProcessGroup, params: Float32Array): Promise<void> {
  if (pg.worldSize === 1) return;
  await pg.broadcast(params, 0);
  const differing = await replicasDiffering(pg, params);
  if (differing.length > 0) {
    throw new CommError(
      `parameters differ between replicas after the broadcast from rank 0 (rank ${pg.rank} disagrees with ranks ${differing.join(', ')})`,
      'the process group corrupted the broadcast; check that all ranks run the same code and model options',
    );
  }
}

/** The ranks whose `params` differ from this rank's, bit for bit (a collective: one all-gather of 32 bytes). */
async function replicasDiffering(pg: ProcessGroup, params: Float32Array): Promise<number[]> {
  const mine = digest(params);
  const all = await pg.allGather(mine);
  const mineBytes = Buffer.from(mine.buffer);
  return all.flatMap((d, rank) => (Buffer.from(d.buffer, d.byteOffset, d.byteLength).equals(mineBytes) ? [] : [rank]));
}

/**
 * After training: check that every replica holds the same bits (they must, as every rank applies
 * the same update to the same weights); resolves with the SHA-256 of the weights (hex), rejects
 * naming the ranks that differ.
 */
export async function checkReplicas(pg: ProcessGroup, params: Float32Array): Promise<string> {
  const hex = Buffer.from(digest(params).buffer).toString('hex');
  if (pg.worldSize === 1) return hex;
  const differing = await replicasDiffering(pg, params);
  if (differing.length > 0) {
    throw new CommError(
      `parameters differ between replicas after training (rank ${pg.rank} disagrees with ranks ${differing.join(', ')})`,
      "the ranks applied different updates: report this as a bug, with the run's flags",
    );
  }
  return hex;
}

/**
 * Scale `gb` by 1/worldSize in place, before summing: the sum of W values of 1/W scale cannot
 * overflow where a sum might. Scaling keeps a value finite or not, so the same pass tells where
 * this rank's first bad value was (undefined when all is finite).
 */
function preDivide(pg: ProcessGroup, gb: GradBuffer): LocalFinding | undefined {
  const bad = preDivideBuffer(gb.flat, pg.worldSize);
  return bad < 0 ? undefined : findingAt(pg.rank, gb, bad);
}

/**
 * `buf` scaled by 1/worldSize in place (each value times the float64 1/worldSize, rounded once:
 * the same bits whichever reducer runs it); the index of its first non-finite value, or -1.
 * In SIMD where the engine has it: the JavaScript loop took ~5–7 ms of every step at the defaults.
 */
export function preDivideBuffer(buf: Float32Array, worldSize: number): number {
  return sharedReducer().scale(buf, 1 / worldSize);
}

/**
 * Average the step buffer (gradients and loss) over ranks, in place: one all-reduce (with
 * `sparse`, of the token embedding's touched rows in per-rank slots and the rest: ddp_sparse.ts). Resolves
 * with where this rank's own buffer held its first NaN or infinity (numerics.ts), found in the
 * pre-division pass before the sum overwrites it; undefined when all was finite, and always with
 * one rank (there the averaged buffer is the rank's own: checkStep looks at it).
 */
export async function averageGradients(
  pg: ProcessGroup,
  gb: GradBuffer,
  compression: GradCompression = 'none',
  sparse?: EmbeddingRows,
): Promise<LocalFinding | undefined> {
  if (pg.worldSize === 1) return undefined;
  const mine = preDivide(pg, gb);
  // The token embedding's rows as sparse rows (ddp_sparse.ts) where the caller found it pays.
  if (sparse !== undefined) await sparse.allReduce(pg, gb, wireOf(compression), mine?.index ?? -1);
  else await pg.allReduce(gb.flat, 'sum', wireOf(compression));
  return mine;
}

/**
 * `--grad-compression` as the all-reduce's wire format: the gradients at 16 bits, the loss (the
 * step buffer's last float) at full width, so the logged loss keeps its digits.
 */
function wireOf(compression: GradCompression): Compression | undefined {
  return compression === 'none' ? undefined : { format: compression, exactTail: 1 };
}

/** What averageGradientShards tells a rank. */
export interface ShardedAverage {
  /** As averageGradients' result. */
  readonly mine: LocalFinding | undefined;
  /** Whether every rank's averaged shard and the averaged loss are finite (the same on every rank). */
  readonly finite: boolean;
}

/**
 * ZeRO's gradient averaging: only this rank's shard of the step buffer (shardRange of its
 * numParams + 1 floats, the loss included: each shard is then reduced exactly as the all-reduce
 * reduces it, bit for bit) is averaged over ranks (a reduce-scatter, half the bytes of an
 * all-reduce); the rest of `gb` is left as this rank's pre-divided own. The loss, which lands in
 * the last rank's shard, goes to every rank, and the ranks agree whether every shard is finite,
 * in one all-reduce of two floats [loss or 0, 0 or NaN] (a NaN anywhere makes the sum NaN).
 * Two collectives.
 */
export async function averageGradientShards(pg: ProcessGroup, gb: GradBuffer, compression: GradCompression = 'none'): Promise<ShardedAverage> {
  const mine = pg.worldSize === 1 ? undefined : preDivide(pg, gb);
  await pg.reduceScatter(gb.flat, 'sum', wireOf(compression));
  const { lo, hi } = shardRange(gb.flat.length, pg.worldSize, pg.rank);
  const ownsLoss = lo <= gb.lossIndex && gb.lossIndex < hi;
  const status = new Float32Array([ownsLoss ? gb.loss : 0, firstNonFinite(gb.flat.subarray(lo, hi)) < 0 ? 0 : Number.NaN]);
  await pg.allReduce(status, 'sum');
  gb.loss = status[0] as number;
  return { mine, finite: Number.isFinite(status[0]) && Number.isFinite(status[1]) };
}

type Outcome<T> = { ok: true; value: T } | { ok: false; name: string; message: string; hint: string | null };

const ERRORS: Record<string, new (message: string, hint?: string) => RosedistError> = {
  ConfigError,
  FileError,
  CommError,
};

/**
 * Rank 0 runs `fn`; every rank returns its (JSON) result or throws its error (the same class for
 * our errors, a RosedistError with rank 0's message otherwise). Rank 0 rethrows the original.
 */
export async function rootDecides<T>(pg: ProcessGroup, fn: () => T | Promise<T>): Promise<T> {
  if (pg.worldSize === 1) return fn();
  let outcome: Outcome<T> | undefined;
  let original: unknown;
  if (pg.rank === 0) {
    try {
      outcome = { ok: true, value: await fn() };
    } catch (e) {
      original = e;
      const err = e instanceof Error ? e : new Error(String(e));
      outcome = { ok: false, name: err.name, message: err.message, hint: e instanceof RosedistError ? (e.hint ?? null) : null };
    }
  }
  const shared = await broadcastJson(pg, outcome, 0);
  if (shared.ok) return shared.value;
  if (pg.rank === 0) throw original;
  const Cls = ERRORS[shared.name] ?? RosedistError;
  throw new Cls(`rank 0: ${shared.message}`, shared.hint ?? undefined);
}
