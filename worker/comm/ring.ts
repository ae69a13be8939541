/**
 * Ring collectives over a RingTransport (send to the right neighbour, receive from the left).
 *
 * All-reduce, as Gloo's segmented ring: the buffer is cut into one chunk per rank and each chunk
 * into segments of about `segmentBytes` (chunks.ts). Over 2(N-1) steps, at step `step` rank r
 * sends chunk (r - step) mod N and receives chunk (r - step - 1) mod N:
 *   - steps 0..N-2 (reduce-scatter): the received segment is combined with the local one and the
 *     result forwarded at the next step; after step N-2 rank r holds the reduced chunk (r+1) mod N
 *     (divided by N here for `mean`) and writes it into its buffer;
 *   - steps N-1..2N-3 (all-gather): the received reduced segment is forwarded and copied into the
 *     buffer.
 * Every segment is forwarded as soon as it is ready, and step 0's segments are all queued at
 * once, so sending (ZeroMQ's I/O thread), receiving and combining (this thread) overlap across
 * segments and steps. Every rank ends with bit-identical results: each chunk is reduced once, by
 * its owner, and copied to the others.
 *
 * Buffer ownership (ZeroMQ sends without copying; send() resolves before delivery):
 *   - step 0 sends slices of the caller's buffer. That is safe: rank r gets the reduced chunk r
 *     back during the all-gather, which cannot happen before its right neighbour has received
 *     (and so ZeroMQ has finished reading) every segment rank r sent at step 0;
 *   - every later send forwards a received message, combined in place. Received messages belong
 *     to this rank and are never written again after being forwarded.
 * Broadcast and all-gather follow the same rules (see each function).
 */
import { CommError } from '../../shared/errors.js';
import {
  allReduceSteps,
  chunkRange,
  neighbours,
  recvChunk,
  segmentCount,
  segmentElemsFor,
  segmentRange,
  sendChunk,
  type Range,
} from './chunks.js';
import { checkHeader, describe, type Header, type Signature } from './frames.js';
import type { FloatArray, NumericArray } from './process_group.js';
import type { Reducer } from './reduce.js';
import type { RingTransport } from './transport.js';

export interface RingContext {
  readonly rank: number;
  readonly worldSize: number;
  readonly transport: RingTransport;
  /** Segment size in bytes (about 1 MiB by default). */
  readonly segmentBytes: number;
  /**
   * All-reduces that would move at most this many bytes per rank as an all-gather
   * ((N-1) × buffer bytes) take the all-gather path (see gatherAllReduce); 0: never.
   */
  readonly gatherBytes: number;
  readonly reducer: Reducer;
}

type Typed = NumericArray;
function bytesOf(a: Typed): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** `payload` as an array of `like`'s float type: a view when aligned, else a copy. */
function asFloat(payload: Uint8Array, like: FloatArray): FloatArray {
  const size = like.BYTES_PER_ELEMENT;
  const length = payload.byteLength / size;
  if (payload.byteOffset % size === 0) {
    return like instanceof Float32Array
      ? new Float32Array(payload.buffer, payload.byteOffset, length)
      : new Float64Array(payload.buffer, payload.byteOffset, length);
  }
  const copy = blank(like, length);
  bytesOf(copy).set(payload);
  return copy;
}

/** A new zeroed array of `like`'s element type (never a Buffer: Buffer.slice() shares memory). */
function blank<T extends Typed>(like: T, length: number): T {
  if (like instanceof Float32Array) return new Float32Array(length) as T;
  if (like instanceof Float64Array) return new Float64Array(length) as T;
  if (like instanceof Int32Array) return new Int32Array(length) as T;
  return new Uint8Array(length) as T;
}

function copyOf<T extends Typed>(buf: T): T {
  const copy = blank(buf, buf.length);
  bytesOf(copy).set(bytesOf(buf));
  return copy;
}

function header(sig: Signature, step: number, segment: number): Header {
  return { ...sig, step, segment };
}

/** The next message from the left, checked against step/segment of `sig` and its length. */
async function receive(ctx: RingContext, sig: Signature, step: number, segment: number, bytes: number): Promise<Uint8Array> {
  const msg = await ctx.transport.receive();
  const left = neighbours(ctx.rank, ctx.worldSize).left;
  checkHeader(header(sig, step, segment), msg.header, ctx.rank, left);
  if (msg.payload.byteLength !== bytes) {
    throw new CommError(
      `ring protocol error in ${describe(sig)}: rank ${ctx.rank} expected ${bytes} bytes at step ${step} ` +
        `segment ${segment} from rank ${left}, got ${msg.payload.byteLength}`,
      'ranks of one run must use the same segment size and the same rosedist version',
    );
  }
  return msg.payload;
}

/** Queue every segment of `range` of `bytes` (element size `size`) as step `step`. */
async function sendSegments(ctx: RingContext, sig: Signature, step: number, bytes: Uint8Array, range: Range, size: number): Promise<void> {
  const segElems = segmentElemsFor(ctx.segmentBytes, size);
  const segs = segmentCount(range.hi - range.lo, segElems);
  for (let j = 0; j < segs; j++) {
    const s = segmentRange(range, segElems, j);
    await ctx.transport.send(header(sig, step, j), bytes.subarray(s.lo * size, s.hi * size));
  }
}

/** In-place all-reduce of `buf` (sig.op; `barrier` uses an empty buffer). See the top comment. */
export async function ringAllReduce(ctx: RingContext, buf: FloatArray, sig: Signature): Promise<void> {
  const n = ctx.worldSize;
  if (n === 1) return;
  if ((n - 1) * buf.byteLength <= ctx.gatherBytes) return gatherAllReduce(ctx, buf, sig);
  const size = buf.BYTES_PER_ELEMENT;
  const segElems = segmentElemsFor(ctx.segmentBytes, size);
  const bytes = bytesOf(buf);
  const op = sig.op === undefined || sig.op === 'mean' ? 'sum' : sig.op;
  const steps = allReduceSteps(n);
  await sendSegments(ctx, sig, 0, bytes, chunkRange(buf.length, n, sendChunk(ctx.rank, 0, n)), size);
  for (let step = 0; step < steps; step++) {
    const chunk = chunkRange(buf.length, n, recvChunk(ctx.rank, step, n));
    const segs = segmentCount(chunk.hi - chunk.lo, segElems);
    for (let j = 0; j < segs; j++) {
      const s = segmentRange(chunk, segElems, j);
      let payload = await receive(ctx, sig, step, j, (s.hi - s.lo) * size);
      if (step < n - 1) {
        const m = asFloat(payload, buf);
        const local = buf.subarray(s.lo, s.hi);
        // The last reduce-scatter step makes the reduced segment: it is also written into the
        // buffer in the same pass, while each block is in cache.
        const finish = step === n - 2 ? { divideBy: sig.op === 'mean' ? n : undefined, copyTo: local } : undefined;
        ctx.reducer.combine(m, local, op, finish);
        payload = bytesOf(m);
      }
      if (step + 1 < steps) await ctx.transport.send(header(sig, step + 1, j), payload);
      // All-gather steps: the payload is a reduced segment.
      if (step >= n - 1) bytes.set(payload, s.lo * size);
    }
  }
}

/**
 * All-reduce of a small buffer, where the number of hops, not bandwidth, decides: every rank
 * gathers every rank's buffer (N-1 ring steps instead of 2(N-1)) and reduces them itself, in
 * rank order, so that every rank still gets the same bits. Moves (N-1)·bytes per rank instead of
 * the ring's 2(N-1)/N·bytes (the same for N = 2), hence only under `ctx.gatherBytes`. The
 * caller's buffer is sent from a private copy (ringAllGather) and written only at the end.
 */
async function gatherAllReduce(ctx: RingContext, buf: FloatArray, sig: Signature): Promise<void> {
  const parts = await ringAllGather(ctx, buf, sig);
  const op = sig.op === undefined || sig.op === 'mean' ? 'sum' : sig.op;
  const acc = parts[0];
  for (let r = 1; r < parts.length; r++) ctx.reducer.combine(acc, parts[r], op);
  if (sig.op === 'mean') ctx.reducer.divide(acc, parts.length);
  buf.set(acc);
}

/**
 * Overwrite `buf` with root's, as a pipelined chain root → root+1 → … → root-1. The last rank
 * then sends an empty acknowledgement to root, so root returns only once every rank has its data
 * (root's buffer was sent without a copy) and a mismatch is seen by root too.
 */
export async function ringBroadcast(ctx: RingContext, buf: NumericArray, sig: Signature & { root: number }): Promise<void> {
  const n = ctx.worldSize;
  if (n === 1) return;
  const size = buf.BYTES_PER_ELEMENT;
  const segElems = segmentElemsFor(ctx.segmentBytes, size);
  const bytes = bytesOf(buf);
  const whole = { lo: 0, hi: buf.length };
  const right = neighbours(ctx.rank, n).right;
  if (ctx.rank === sig.root) {
    await sendSegments(ctx, sig, 0, bytes, whole, size);
    await receive(ctx, sig, 1, 0, 0);
    return;
  }
  const segs = segmentCount(buf.length, segElems);
  for (let j = 0; j < segs; j++) {
    const s = segmentRange(whole, segElems, j);
    const payload = await receive(ctx, sig, 0, j, (s.hi - s.lo) * size);
    if (right !== sig.root) await ctx.transport.send(header(sig, 0, j), payload);
    bytes.set(payload, s.lo * size);
  }
  if (right === sig.root) await ctx.transport.send(header(sig, 1, 0), new Uint8Array(0));
}

/**
 * Every rank's `buf`, indexed by rank: N-1 ring steps, at step `step` rank r forwards rank
 * (r - step)'s buffer and receives rank (r - step - 1)'s. The own buffer is sent from a private
 * copy: nothing in an all-gather proves that the right neighbour has it before this rank returns.
 */
export async function ringAllGather<T extends NumericArray>(ctx: RingContext, buf: T, sig: Signature): Promise<T[]> {
  const n = ctx.worldSize;
  const results = Array.from({ length: n }, (_, r) => (r === ctx.rank ? copyOf(buf) : blank(buf, buf.length)));
  if (n === 1) return results;
  const size = buf.BYTES_PER_ELEMENT;
  const segElems = segmentElemsFor(ctx.segmentBytes, size);
  const whole = { lo: 0, hi: buf.length };
  const segs = segmentCount(buf.length, segElems);
  await sendSegments(ctx, sig, 0, bytesOf(copyOf(buf)), whole, size);
  for (let step = 0; step < n - 1; step++) {
    const into = bytesOf(results[recvChunk(ctx.rank, step, n)]);
    for (let j = 0; j < segs; j++) {
      const s = segmentRange(whole, segElems, j);
      const payload = await receive(ctx, sig, step, j, (s.hi - s.lo) * size);
      if (step + 1 < n - 1) await ctx.transport.send(header(sig, step + 1, j), payload);
      into.set(payload, s.lo * size);
    }
  }
  return results;
}
