/**
 * Chunk and segment arithmetic of the ring, in Gloo's vocabulary, as pure functions.
 *
 *   buffer  = `count` elements, cut into `worldSize` chunks (one per rank, as equal as possible:
 *             the first `count % worldSize` chunks get one element more; a chunk may be empty);
 *   chunk   = cut into segments of at most `segmentElems` elements. A chunk has at least one
 *             segment, possibly empty, so that every step of the ring sends at least one message
 *             and every collective synchronises its ranks (mismatches are always seen).
 *
 * At ring step `step`, rank r sends chunk (r - step - 1) mod N to its right neighbour and receives
 * chunk (r - step - 2) mod N from its left neighbour. With 2(N-1) steps this is the whole
 * all-reduce: steps 0..N-2 reduce-scatter (after them rank r owns the reduced chunk r, as PyTorch's
 * reduce_scatter gives rank r the r-th part), steps N-1..2N-3 all-gather (rank r starts by
 * sending chunk r). A stand-alone all-gather of chunks numbers its steps from N-1 as well.
 */

/** Element range [lo, hi) of a buffer or a chunk. */
export interface Range {
  readonly lo: number;
  readonly hi: number;
}

/** Non-negative remainder: mod(-1, 4) = 3. */
export function mod(a: number, n: number): number {
  return ((a % n) + n) % n;
}

/** Ring neighbours of `rank`: it receives from `left` and sends to `right`. */
export function neighbours(rank: number, worldSize: number): { left: number; right: number } {
  return { left: mod(rank - 1, worldSize), right: mod(rank + 1, worldSize) };
}

/** Elements [lo, hi) of chunk `chunk` when `count` elements are split over `worldSize` chunks. */
export function chunkRange(count: number, worldSize: number, chunk: number): Range {
  const base = Math.floor(count / worldSize);
  const extra = count % worldSize;
  const lo = chunk * base + Math.min(chunk, extra);
  return { lo, hi: lo + base + (chunk < extra ? 1 : 0) };
}

/** Where a buffer lies in a larger one: its elements are [offset, offset + its length) of `total`. */
export interface BufferWindow {
  readonly offset: number;
  readonly total: number;
}

/**
 * Chunk `chunk` of a window of `length` elements cut as the ring cuts the whole buffer: the whole
 * buffer's chunk ∩ the window, in window offsets (possibly empty). Reduced with these chunks, each
 * element takes the same chain of ranks, so the same order of additions and the same bits, as in
 * the whole buffer's all-reduce (gradient buckets: ddp_overlap.ts).
 */
export function windowChunkRange(window: BufferWindow, length: number, worldSize: number, chunk: number): Range {
  const c = chunkRange(window.total, worldSize, chunk);
  const lo = Math.min(length, Math.max(0, c.lo - window.offset));
  return { lo, hi: Math.max(lo, Math.min(length, c.hi - window.offset)) };
}

/** Segments of a chunk of `length` elements: at least 1, each at most `segmentElems` long. */
export function segmentCount(length: number, segmentElems: number): number {
  return Math.max(1, Math.ceil(length / segmentElems));
}

/** Elements [lo, hi) of segment `segment` of `chunk` (absolute offsets in the buffer). */
export function segmentRange(chunk: Range, segmentElems: number, segment: number): Range {
  const lo = Math.min(chunk.hi, chunk.lo + segment * segmentElems);
  return { lo, hi: Math.min(chunk.hi, lo + segmentElems) };
}

/** Segment size in elements for a segment size in bytes (at least one element). */
export function segmentElemsFor(segmentBytes: number, bytesPerElement: number): number {
  return Math.max(1, Math.floor(segmentBytes / bytesPerElement));
}

/** The chunk rank `rank` sends at ring step `step`. */
export function sendChunk(rank: number, step: number, worldSize: number): number {
  return mod(rank - step - 1, worldSize);
}

/** The chunk rank `rank` receives at ring step `step`. */
export function recvChunk(rank: number, step: number, worldSize: number): number {
  return mod(rank - step - 2, worldSize);
}

/** Steps of the reduce-scatter phase (0..N-2); the all-gather phase follows as N-1..2N-3. */
export function reduceScatterSteps(worldSize: number): number {
  return worldSize - 1;
}

/**
 * The elements rank `rank` owns after a reduce-scatter and contributes to an all-gather of
 * chunks: chunk `rank` of `count` elements (ZeRO's shard of that rank).
 */
export function shardRange(count: number, worldSize: number, rank: number): Range {
  return chunkRange(count, worldSize, rank);
}

/** Steps of a ring all-reduce: N-1 reduce-scatter then N-1 all-gather; 0 for one rank. */
export function allReduceSteps(worldSize: number): number {
  return 2 * (worldSize - 1);
}
