/**
 * Compressed all-reduce and reduce-scatter of a float32 buffer (`--grad-compression`): the ring
 * of ring.ts with every message in a 16-bit wire format (wire.ts), so the bytes on the wire halve.
 * The caller's buffer and every sum stay float32; only what is sent is rounded.
 *
 * Where rounding happens (round to nearest even, wire.ts), for each element of chunk c:
 *   1. the rank that starts chunk c's chain rounds its own value to 16 bits and sends it;
 *   2. each following rank decodes it (exactly), adds its own float32 value in float32, and,
 *      unless it owns chunk c, rounds that float32 sum to 16 bits and sends it on;
 *   3. the owner divides its float32 sum (for `mean`), rounds it to 16 bits once, and every rank,
 *      the owner included, takes that 16-bit value (decoded) as the result: the all-gather
 *      forwards those bytes unchanged.
 * So every rank ends with the same bits, each a 16-bit value; N roundings per element in all
 * (PyTorch's bf16 hook over NCCL rounds every rank's input and every partial sum: 2N - 1).
 * The small-buffer path (gather) rounds each rank's buffer once, sums the decoded buffers in
 * float32 in rank order, and rounds the result once, on every rank alike.
 * Elements of the codec's exact tail travel and are summed as float32, as in ring.ts.
 *
 * Buffer ownership: every message sent is either a fresh encoding or a received message
 * forwarded unchanged, so nothing of the caller's buffer is on the wire when this returns.
 * Encodings go into the transport's memory where it has some (transport.allocate), handed back
 * after their send, so that it can reuse it instead of leaving ~2 bytes per element of garbage
 * per all-reduce to V8's collector.
 */
import { recvChunk, reduceScatterSteps, allReduceSteps, segmentCount, segmentElemsFor, segmentRange, sendChunk, type Range } from './chunks.js';
import type { Signature } from './frames.js';
import { combineOp, header, receive, wholeChunks, type ChunkOf, type RingContext } from './ring.js';
import { ringAllGather } from './ring_whole.js';
import type { WireCodec } from './wire.js';

/**
 * Segments of a chunk: segmentBytes on the wire (2 bytes per element), so a compressed message is
 * as large as a float32 one and there are half as many. Cut as the float32 ring's (4 bytes per
 * element), 1.5 M floats of the GPT's gradient took 12 messages of 512 KiB and the all-reduce on
 * the 1 Gbit + 2.5 ms link 57–95 ms (median 81.5) against 60–83 ms (65) with 1 MiB messages
 * (links_bench rounds on the shared machine; each message costs a turn of both ranks' event loops).
 */
function segmentsOf(ctx: RingContext, chunk: Range): Range[] {
  const segElems = segmentElemsFor(ctx.segmentBytes, 2);
  return Array.from({ length: segmentCount(chunk.hi - chunk.lo, segElems) }, (_, j) => segmentRange(chunk, segElems, j));
}

/**
 * Compressed ring: reduce-scatter (steps 0..N-2) and, when `gather`, the all-gather (N-1..2N-3).
 * Without `gather`, chunk `rank` of `buf` holds the result and the rest is as it was.
 */
export async function compressedRing(ctx: RingContext, buf: Float32Array, sig: Signature, codec: WireCodec, gather: boolean, chunkOf?: ChunkOf): Promise<void> {
  const n = ctx.worldSize;
  if (n === 1) return;
  const chunks = chunkOf ?? wholeChunks(buf.length, n);
  const op = combineOp(sig);
  const last = reduceScatterSteps(n) - 1;
  const first = chunks(sendChunk(ctx.rank, 0, n));
  for (const [j, s] of segmentsOf(ctx, first).entries()) {
    const out = ctx.transport.allocate?.(codec.bytes(s));
    await ctx.transport.send(header(sig, 0, j), codec.encode(buf.subarray(s.lo, s.hi), s, out));
    if (out !== undefined) ctx.transport.release?.(out);
  }
  for (let step = 0; step <= last; step++) {
    const chunk = chunks(recvChunk(ctx.rank, step, n));
    for (const [j, s] of segmentsOf(ctx, chunk).entries()) {
      const payload = await receive(ctx, sig, step, j, codec.bytes(s));
      const local = buf.subarray(s.lo, s.hi);
      // Decode, combine in float32, (divide,) encode: one pass for bf16 (wire.ts addEncode).
      const finish = step < last ? undefined : { divideBy: sig.op === 'mean' ? n : undefined };
      const out = step < last || gather ? ctx.transport.allocate?.(codec.bytes(s)) : undefined;
      const wire = codec.addEncode(payload, s, local, ctx.reducer, op, finish, out);
      ctx.transport.release?.(payload);
      if (step < last) await ctx.transport.send(header(sig, step + 1, j), wire);
      else if (gather) await ctx.transport.send(header(sig, last + 1, j), wire);
      if (out !== undefined) ctx.transport.release?.(out);
    }
  }
  if (!gather) return;
  for (let step = last + 1; step < allReduceSteps(n); step++) {
    const chunk = chunks(recvChunk(ctx.rank, step, n));
    for (const [j, s] of segmentsOf(ctx, chunk).entries()) {
      const payload = await receive(ctx, sig, step, j, codec.bytes(s));
      if (step + 1 < allReduceSteps(n)) await ctx.transport.send(header(sig, step + 1, j), payload);
      codec.decode(payload, s, buf.subarray(s.lo, s.hi));
      ctx.transport.release?.(payload);
    }
  }
}

/**
 * Compressed small-buffer path: every rank's encoded buffer to every rank (ring_whole.ts
 * ringAllGather), decoded and summed in float32 in rank order, the result rounded once. With
 * `only` (a reduce-scatter), just that range of `buf` is written.
 */
export async function compressedGather(ctx: RingContext, buf: Float32Array, sig: Signature, codec: WireCodec, only?: Range): Promise<void> {
  const whole = { lo: 0, hi: buf.length };
  const parts = await ringAllGather(ctx, codec.encode(buf, whole), sig);
  const acc = new Float32Array(buf.length);
  const next = new Float32Array(buf.length);
  codec.decode(parts[0] as Uint8Array, whole, acc);
  for (let r = 1; r < parts.length; r++) {
    codec.decode(parts[r] as Uint8Array, whole, next);
    ctx.reducer.combine(acc, next, combineOp(sig));
  }
  if (sig.op === 'mean') ctx.reducer.divide(acc, parts.length);
  codec.decode(codec.encode(acc, whole), whole, acc);
  const r = only ?? whole;
  buf.set(acc.subarray(r.lo, r.hi), r.lo);
}
