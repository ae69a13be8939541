/**
 * The process group seam: the collectives a data-parallel worker needs. One real implementation
 * (ZeroMQ, zmq_group.ts) and one trivial one (a world of one process, below) for tests and for
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

export type ReduceOp = 'sum' | 'mean' | 'max' | 'min';
export type FloatArray = Float32Array | Float64Array;
export type NumericArray = Float32Array | Float64Array | Int32Array | Uint8Array;

export interface ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  /** Reduce `buf` over all ranks, in place; every rank ends with the result. */
  allReduce(buf: FloatArray, op?: ReduceOp): Promise<void>;
  /** Overwrite `buf` on every rank with root's `buf`. Lengths must match on all ranks. */
  broadcast(buf: NumericArray, root: number): Promise<void>;
  /** Every rank's `buf` (equal lengths), indexed by rank. */
  allGather<T extends NumericArray>(buf: T): Promise<T[]>;
  /** Resolves once every rank has called barrier(). */
  barrier(): Promise<void>;
  /** Release sockets. Idempotent. */
  close(): Promise<void>;
}

/** A world of one: every collective is the identity. */
export class SingleProcessGroup implements ProcessGroup {
  readonly rank = 0;
  readonly worldSize = 1;
  async allReduce(_buf: FloatArray, _op: ReduceOp = 'sum'): Promise<void> {}
  async broadcast(_buf: NumericArray, root: number): Promise<void> {
    if (root !== 0) throw new RangeError(`broadcast root ${root} is not a rank of a world of 1`);
  }
  async allGather<T extends NumericArray>(buf: T): Promise<T[]> {
    return [buf.slice() as T];
  }
  async barrier(): Promise<void> {}
  async close(): Promise<void> {}
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
