/**
 * Whole-buffer collectives on the ring (ring.ts has the segmented all-reduce and its phases, and
 * the buffer-ownership rules these follow too): broadcast as a pipelined chain, the all-gather of
 * every rank's whole buffer, and the small-buffer ('gather') all-reduce and reduce-scatter built
 * on that all-gather.
 */
import { chunkRange, neighbours, recvChunk, reduceScatterSteps, segmentCount, segmentElemsFor, segmentRange } from './chunks.js';
import type { Signature } from './frames.js';
import type { FloatArray, NumericArray } from './process_group.js';
import { blank, bytesOf, combineOp, copyOf, header, receive, sendSegments, type RingContext } from './ring.js';

/**
 * All-reduce of a small buffer, where the number of hops, not bandwidth, decides: every rank
 * gathers every rank's buffer (N-1 ring steps instead of 2(N-1)) and reduces them itself, in
 * rank order, so that every rank still gets the same bits. Moves (N-1)·bytes per rank instead of
 * the ring's 2(N-1)/N·bytes (the same for N = 2), hence only for small buffers (the group
 * chooses: ring_group_options.ts chooseAllReduce). The caller's buffer is sent from a private copy
 * (ringAllGather) and written only at the end.
 */
export async function gatherAllReduce(ctx: RingContext, buf: FloatArray, sig: Signature): Promise<void> {
  const parts = await ringAllGather(ctx, buf, sig);
  const op = combineOp(sig);
  const acc = parts[0];
  for (let r = 1; r < parts.length; r++) ctx.reducer.combine(acc, parts[r], op);
  if (sig.op === 'mean') ctx.reducer.divide(acc, parts.length);
  buf.set(acc);
}

/**
 * Reduce-scatter of a small buffer, the counterpart of gatherAllReduce: every rank gathers every
 * rank's buffer and reduces its own chunk, in rank order, so that the chunk has exactly the bits
 * gatherAllReduce gives it.
 */
export async function gatherReduceScatter(ctx: RingContext, buf: FloatArray, sig: Signature): Promise<void> {
  const parts = await ringAllGather(ctx, buf, sig);
  const { lo, hi } = chunkRange(buf.length, ctx.worldSize, ctx.rank);
  const acc = parts[0].subarray(lo, hi);
  for (let r = 1; r < parts.length; r++) ctx.reducer.combine(acc, parts[r].subarray(lo, hi), combineOp(sig));
  if (sig.op === 'mean') ctx.reducer.divide(acc, parts.length);
  buf.set(acc, lo);
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
    ctx.transport.release?.(payload);
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
    // Rank r - step - 1's buffer, as chunk r - step - 1 arrives at the all-gather's step `step`.
    const into = bytesOf(results[recvChunk(ctx.rank, reduceScatterSteps(n) + step, n)]);
    for (let j = 0; j < segs; j++) {
      const s = segmentRange(whole, segElems, j);
      const payload = await receive(ctx, sig, step, j, (s.hi - s.lo) * size);
      if (step + 1 < n - 1) await ctx.transport.send(header(sig, step + 1, j), payload);
      into.set(payload, s.lo * size);
      ctx.transport.release?.(payload);
    }
  }
  return results;
}
