/**
 * Ring collectives over a RingTransport (send to the right neighbour, receive from the left).
 *
 * All-reduce, as Gloo's segmented ring (allreduce.cc), in two labelled phases: the buffer is cut
 * into one chunk per rank and each chunk into segments of about `segmentBytes` (chunks.ts).
 * At ring step `step` rank r sends chunk (r - step - 1) mod N and receives (r - step - 2) mod N:
 *   - phase 1, reduce-scatter (steps 0..N-2, `reduceScatterPhase`): the received segment is
 *     combined with the local one and forwarded at the next step; after step N-2 rank r holds the
 *     reduced chunk r (divided by N for `mean`) and has written it into its buffer;
 *   - phase 2, all-gather (steps N-1..2N-3, `allGatherPhase`): each received reduced segment is
 *     forwarded and copied into the buffer.
 * In the all-reduce the phases meet segment by segment: each segment reduced at step N-2 is
 * handed to the all-gather and sent at once, so sending (ZeroMQ's I/O thread), receiving and
 * combining (this thread) overlap across segments and phases; step 0's segments are all queued at
 * once. Every rank ends with bit-identical results: each chunk is reduced once, by its owner, in
 * ring order, and copied to the others.
 *
 * Broadcast, the all-gather of whole buffers and the small-buffer algorithms are in
 * ring_whole.ts. The phases are also collectives of their own (ZeRO's sharded optimizer uses them):
 * `ringReduceScatter` (rank r ends with the reduced chunk r in place, the rest of its buffer as
 * it was) and `ringAllGatherChunks` (rank r contributes chunk r of its buffer and ends with every
 * chunk).
 *
 * Buffer ownership (ZeroMQ sends without copying; send() resolves before delivery):
 *   - the all-reduce's step 0 sends slices of the caller's buffer. That is safe: rank r gets the
 *     reduced chunk (r - 1) back during the all-gather, which cannot happen before its right
 *     neighbour has received (and so ZeroMQ has finished reading) every segment rank r sent at
 *     step 0;
 *   - every later send forwards a received message, or its combination with the local segment
 *     (written into memory from transport.allocate where the transport has it, else into the
 *     received message). Such messages belong to this rank and are never written again once
 *     sent; once combined, copied or sent they are handed back (transport.release), and the
 *     transport reuses or frees their memory only after a send of them has been written;
 *   - the stand-alone reduce-scatter and all-gather of chunks send their first step from a
 *     private copy (1/N of the buffer): nothing in them proves that the right neighbour has it
 *     before this rank returns.
 */
import { CommError } from '../../shared/errors.js';
import {
  allReduceSteps,
  chunkRange,
  reduceScatterSteps,
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
import type { CombineOp, Reducer } from './reduce.js';
import type { RingTransport } from './transport.js';

export interface RingContext {
  readonly rank: number;
  readonly worldSize: number;
  readonly transport: RingTransport;
  /** Segment size in bytes (about 1 MiB by default). */
  readonly segmentBytes: number;
  readonly reducer: Reducer;
}

// The helpers below are shared with ring_whole.ts.
type Typed = NumericArray;
export function bytesOf(a: Typed): Uint8Array {
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
export function blank<T extends Typed>(like: T, length: number): T {
  if (like instanceof Float32Array) return new Float32Array(length) as T;
  if (like instanceof Float64Array) return new Float64Array(length) as T;
  if (like instanceof Int32Array) return new Int32Array(length) as T;
  return new Uint8Array(length) as T;
}

export function copyOf<T extends Typed>(buf: T): T {
  const copy = blank(buf, buf.length);
  bytesOf(copy).set(bytesOf(buf));
  return copy;
}

export function header(sig: Signature, step: number, segment: number): Header {
  return { ...sig, step, segment };
}

/** The next message from the left, checked against step/segment of `sig` and its length. */
export async function receive(ctx: RingContext, sig: Signature, step: number, segment: number, bytes: number): Promise<Uint8Array> {
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

/**
 * Queue every segment of `range` (elements of size `size`) as step `step`, read from `bytes`,
 * which holds the buffer from element `base` on (0: the whole buffer; range.lo: a copy of the range).
 */
export async function sendSegments(ctx: RingContext, sig: Signature, step: number, bytes: Uint8Array, range: Range, size: number, base = 0): Promise<void> {
  const segElems = segmentElemsFor(ctx.segmentBytes, size);
  const segs = segmentCount(range.hi - range.lo, segElems);
  for (let j = 0; j < segs; j++) {
    const s = segmentRange(range, segElems, j);
    await ctx.transport.send(header(sig, step, j), bytes.subarray((s.lo - base) * size, (s.hi - base) * size));
  }
}

/** A received reduced segment, handed from the reduce-scatter to the all-gather. */
type HandOff = (segment: number, payload: Uint8Array) => Promise<void>;

/**
 * Phase 1, reduce-scatter: ring steps 0..N-2 over `buf` (in place). Step 0 sends from the
 * caller's buffer, or from a private copy of what it sends when `copyFirst`. On return chunk `rank` of
 * `buf` holds op over every rank's chunk, divided by `divideBy` when given; the other chunks
 * are as they were. `handOff` gets each reduced segment (a message this rank owns) at once.
 */
async function reduceScatterPhase(
  ctx: RingContext,
  buf: FloatArray,
  copyFirst: boolean,
  sig: Signature,
  op: CombineOp,
  divideBy: number | undefined,
  handOff?: HandOff,
  chunks: ChunkOf = wholeChunks(buf.length, ctx.worldSize),
): Promise<void> {
  const n = ctx.worldSize;
  const size = buf.BYTES_PER_ELEMENT;
  const segElems = segmentElemsFor(ctx.segmentBytes, size);
  const last = reduceScatterSteps(n) - 1;
  const firstChunk = chunks(sendChunk(ctx.rank, 0, n));
  if (copyFirst) {
    const copy = bytesOf(buf).slice(firstChunk.lo * size, firstChunk.hi * size);
    await sendSegments(ctx, sig, 0, copy, firstChunk, size, firstChunk.lo);
  } else {
    await sendSegments(ctx, sig, 0, bytesOf(buf), firstChunk, size);
  }
  for (let step = 0; step <= last; step++) {
    const chunk = chunks(recvChunk(ctx.rank, step, n));
    const segs = segmentCount(chunk.hi - chunk.lo, segElems);
    for (let j = 0; j < segs; j++) {
      const s = segmentRange(chunk, segElems, j);
      const payload = await receive(ctx, sig, step, j, (s.hi - s.lo) * size);
      const m = asFloat(payload, buf);
      const local = buf.subarray(s.lo, s.hi);
      const sending = step < last || handOff !== undefined;
      // What is sent on: the transport's own memory where it has some (the received message is
      // then freed at once), else the received message, combined in place.
      const out = sending && ctx.transport.allocate !== undefined ? asFloat(ctx.transport.allocate(payload.byteLength), buf) : m;
      if (step < last) {
        ctx.reducer.combine(m, local, op, { into: out });
      } else {
        // The reduced segment is also written into the buffer in the same pass, while each
        // block is in cache.
        ctx.reducer.combine(m, local, op, { divideBy, copyTo: local, into: out });
      }
      // The received message is done with unless it is what goes on (then after the send).
      if (out !== m) ctx.transport.release?.(payload);
      if (step < last) await ctx.transport.send(header(sig, step + 1, j), bytesOf(out));
      else await handOff?.(j, bytesOf(out));
      ctx.transport.release?.(out === m ? payload : bytesOf(out));
    }
  }
}

/**
 * Phase 2, all-gather of chunks: ring steps N-1..2N-3 into `buf`. Step N-1 sends chunk `rank`:
 * from `own` (a private copy of it, or the caller's buffer) or, when `own` is undefined, the
 * reduce-scatter has already handed its segments over. Each received chunk is forwarded and
 * copied into `buf`.
 */
async function allGatherPhase(
  ctx: RingContext,
  buf: NumericArray,
  sig: Signature,
  own: Uint8Array | undefined,
  chunks: ChunkOf = wholeChunks(buf.length, ctx.worldSize),
): Promise<void> {
  const n = ctx.worldSize;
  const size = buf.BYTES_PER_ELEMENT;
  const segElems = segmentElemsFor(ctx.segmentBytes, size);
  const bytes = bytesOf(buf);
  const begin = reduceScatterSteps(n);
  const end = allReduceSteps(n);
  if (own !== undefined) {
    const mine = chunks(ctx.rank);
    await sendSegments(ctx, sig, begin, own, mine, size, mine.lo);
  }
  for (let step = begin; step < end; step++) {
    const chunk = chunks(recvChunk(ctx.rank, step, n));
    const segs = segmentCount(chunk.hi - chunk.lo, segElems);
    for (let j = 0; j < segs; j++) {
      const s = segmentRange(chunk, segElems, j);
      const payload = await receive(ctx, sig, step, j, (s.hi - s.lo) * size);
      if (step + 1 < end) await ctx.transport.send(header(sig, step + 1, j), payload);
      bytes.set(payload, s.lo * size);
      ctx.transport.release?.(payload);
    }
  }
}

export function combineOp(sig: Signature): CombineOp {
  return sig.op === undefined || sig.op === 'mean' ? 'sum' : sig.op;
}

/**
 * In-place ring all-reduce of `buf` (sig.op; `barrier` uses an empty buffer): the two phases,
 * joined segment by segment. See the top comment.
 */
export async function ringAllReduce(ctx: RingContext, buf: FloatArray, sig: Signature, chunkOf?: ChunkOf): Promise<void> {
  const n = ctx.worldSize;
  if (n === 1) return;
  const chunks = chunkOf ?? wholeChunks(buf.length, n);
  const divideBy = sig.op === 'mean' ? n : undefined;
  const forward: HandOff = (j, payload) => ctx.transport.send(header(sig, reduceScatterSteps(n), j), payload);
  await reduceScatterPhase(ctx, buf, false, sig, combineOp(sig), divideBy, forward, chunks);
  await allGatherPhase(ctx, buf, sig, undefined, chunks);
}

/** Element range of chunk c of the buffer being reduced (ring_group.ts: the whole buffer's, or a window's: chunks.ts). */
export type ChunkOf = (chunk: number) => Range;

/** The ring's own cut of a buffer of `count` elements. */
export function wholeChunks(count: number, worldSize: number): ChunkOf {
  return (c) => chunkRange(count, worldSize, c);
}

/**
 * Reduce-scatter of `buf` (length: the whole buffer, equal on every rank): on return chunk
 * `rank` (chunks.ts shardRange) holds op over all ranks' chunks; the rest is as it was.
 */
export async function ringReduceScatter(ctx: RingContext, buf: FloatArray, sig: Signature): Promise<void> {
  const n = ctx.worldSize;
  if (n === 1) return;
  const divideBy = sig.op === 'mean' ? n : undefined;
  await reduceScatterPhase(ctx, buf, true, sig, combineOp(sig), divideBy);
}

/**
 * All-gather of chunks in place: rank r contributes chunk r of `buf` (chunks.ts shardRange) and
 * ends with every rank's chunk in its place. Its own chunk is sent from a private copy.
 */
export async function ringAllGatherChunks(ctx: RingContext, buf: NumericArray, sig: Signature): Promise<void> {
  const n = ctx.worldSize;
  if (n === 1) return;
  const own = chunkRange(buf.length, n, ctx.rank);
  const size = buf.BYTES_PER_ELEMENT;
  await allGatherPhase(ctx, buf, sig, bytesOf(buf).slice(own.lo * size, own.hi * size));
}
