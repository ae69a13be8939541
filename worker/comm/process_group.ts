/**
 * The process group seam: the collectives a data-parallel worker needs. One real implementation
 * (ZeroMQ, zmq/zmq_group.ts) and one trivial one (a world of one process, below) for tests and for
 * train_minimal.
 *
 * Rules for every implementation:
 *   - Every rank calls the same collectives in the same order (each one carries a sequence number
 *     and its kind; a rank that calls another one fails with an error naming both).
 *   - Collectives are not re-entrant: await one before starting the next.
 *   - Buffers are reduced/overwritten in place; the caller must not touch them until the promise
 *     resolves.
 *   - A collective that waits longer than the group's timeout rejects with a CommError naming the
 *     op, its sequence number and the ranks that did not take part.
 */

import type { CollectiveRecord } from '../../shared/error_file.js';
import type { Compression } from './wire.js';
import type { BufferWindow } from './chunks.js';

/** The reductions of allReduce. The order is the wire code (comm/frames.ts): append only. */
export const REDUCE_OPS = ['sum', 'mean', 'max', 'min'] as const;
export type ReduceOp = (typeof REDUCE_OPS)[number];
export type FloatArray = Float32Array | Float64Array;
export type NumericArray = Float32Array | Float64Array | Int32Array | Uint8Array;

export interface ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  /**
   * Reduce `buf` over all ranks, in place; every rank ends with the result. With `compression`
   * (a Float32Array only) the messages carry 16-bit values and every result is one
   * (ring_compressed.ts says where rounding happens); the same bits on every rank still.
   * With `window`, `buf` is a piece of a larger buffer (elements [offset, offset + length) of
   * `total`; every rank passes the same) and is reduced as that buffer's all-reduce would reduce
   * those elements, bit for bit (chunks.ts windowChunkRange; overlap's gradient buckets).
   */
  allReduce(buf: FloatArray, op?: ReduceOp, compression?: Compression, window?: BufferWindow): Promise<void>;
  /** Overwrite `buf` on every rank with root's `buf`. Lengths must match on all ranks. */
  broadcast(buf: NumericArray, root: number): Promise<void>;
  /** Every rank's `buf` (equal lengths), indexed by rank. */
  allGather<T extends NumericArray>(buf: T): Promise<T[]>;
  /**
   * Reduce `buf` (the whole buffer, equal lengths) over all ranks into this rank's shard only:
   * on return `buf[shardRange(buf.length, worldSize, rank)]` (chunks.ts) holds the result, the
   * rest of `buf` is as it was; the shard has exactly the bits allReduce would give it. Moves
   * (N-1)/N of the buffer per rank (half an all-reduce) on the ring; small buffers take the
   * all-reduce's small-buffer path.
   */
  reduceScatter(buf: FloatArray, op?: ReduceOp, compression?: Compression): Promise<void>;
  /**
   * In place: every rank contributes its shard of `buf` (shardRange) and ends with every rank's
   * shard in its place. The other half of an all-reduce.
   */
  allGatherChunks(buf: NumericArray): Promise<void>;
  /** Resolves once every rank has called barrier(). */
  barrier(): Promise<void>;
  /** Release sockets. Idempotent. */
  close(): Promise<void>;
  /**
   * This rank's latest collectives (a few), oldest first: for its error file when it fails.
   * Optional so that test doubles need not record anything.
   */
  recentCollectives?(): readonly CollectiveRecord[];
  /**
   * torch's `dist.new_group(ranks)`: a group of its own over `ranks` (ranks of this group; group
   * rank i is ranks[i]), with its own sequence numbers, timeout and diagnostics. A collective of
   * THIS group: every rank calls it, with the same list, in the same order; members get their
   * group, the others undefined. Optional so that test doubles need not implement it.
   */
  newGroup?(ranks: readonly number[]): Promise<ProcessGroup | undefined>;
}

/** `ranks` checked as a subgroup of a world of `worldSize`: distinct ranks, at least one. Throws a RangeError. */
export function checkGroupRanks(ranks: readonly number[], worldSize: number): void {
  const bad = ranks.find((r) => !Number.isInteger(r) || r < 0 || r >= worldSize);
  if (ranks.length === 0) throw new RangeError('newGroup needs at least one rank');
  if (bad !== undefined) throw new RangeError(`newGroup: ${bad} is not a rank of a world of ${worldSize}`);
  if (new Set(ranks).size !== ranks.length) throw new RangeError(`newGroup: ranks [${ranks.join(', ')}] repeat a rank`);
}

/** A world of one: every collective is the identity. */
export class SingleProcessGroup implements ProcessGroup {
  readonly rank = 0;
  readonly worldSize = 1;
  async allReduce(_buf: FloatArray, _op: ReduceOp = 'sum', _compression?: Compression, _window?: BufferWindow): Promise<void> {}
  async broadcast(_buf: NumericArray, root: number): Promise<void> {
    if (root !== 0) throw new RangeError(`broadcast root ${root} is not a rank of a world of 1`);
  }
  async allGather<T extends NumericArray>(buf: T): Promise<T[]> {
    return [buf.slice() as T];
  }
  async reduceScatter(_buf: FloatArray, _op: ReduceOp = 'sum', _compression?: Compression): Promise<void> {}
  async allGatherChunks(_buf: NumericArray): Promise<void> {}
  async barrier(): Promise<void> {}
  async close(): Promise<void> {}
  recentCollectives(): readonly CollectiveRecord[] {
    return [];
  }
  async newGroup(ranks: readonly number[]): Promise<ProcessGroup | undefined> {
    checkGroupRanks(ranks, 1);
    return new SingleProcessGroup();
  }
}

/** Broadcast a JSON value from root (undefined elsewhere) to every rank. */
export async function broadcastJson<T>(pg: ProcessGroup, value: T | undefined, root = 0): Promise<T> {
  if (pg.worldSize === 1) return value as T;
  const bytes = pg.rank === root ? new TextEncoder().encode(JSON.stringify(value ?? null)) : new Uint8Array(0);
  const len = new Float64Array([bytes.length]);
  await pg.broadcast(len, root);
  const buf = pg.rank === root ? bytes : new Uint8Array(len[0]);
  await pg.broadcast(buf, root);
  return JSON.parse(new TextDecoder().decode(buf)) as T;
}

/**
 * Every rank's JSON `value`, indexed by rank (a collective). Travels as UTF-8 bytes over two
 * allGathers: the byte lengths (float64, exact up to 2^53), then the texts padded with spaces to
 * the longest (allGather needs equal lengths; each text is cut back to its own length anyway).
 * `undefined` travels as null. In a world of one: `[value]` itself, no copy (the profiler's event
 * lists can be large).
 */
export async function allGatherJson<T>(pg: ProcessGroup, value: T): Promise<T[]> {
  if (pg.worldSize === 1) return [value];
  const bytes = new TextEncoder().encode(JSON.stringify(value) ?? 'null');
  const lengths = (await pg.allGather(new Float64Array([bytes.length]))).map((l) => l[0]);
  const padded = new Uint8Array(Math.max(...lengths)).fill(0x20);
  padded.set(bytes);
  const texts = await pg.allGather(padded);
  const decoder = new TextDecoder();
  return texts.map((t, rank) => JSON.parse(decoder.decode(t.subarray(0, lengths[rank]))) as T);
}
