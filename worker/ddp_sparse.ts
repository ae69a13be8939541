/**
 * The token embedding's gradient as sparse rows (`--sparse-embedding-grad`, where it moves fewer
 * bytes; off by default, as PyTorch's embeddings are dense unless `sparse=True`). The step buffer starts with the token embedding's gradient, [V, C] row-major
 * (model/params.ts: the first parameter), and a step touches only the rows of its own tokens: at
 * the defaults 256 tokens of a 10,000-word vocabulary, so 43 % of the step buffer is rows of zeros
 * that the dense all-reduce sums anyway. Here, per step, still one all-reduce:
 *   1. each rank copies out the rows its step's input ids looked up (the other rows are zero:
 *      checked on the first step);
 *   2. the end of the head becomes N slots, one per rank, all zero but this rank's own, which holds
 *      [count | ids | rows (maxRows × C)] (count and ids as 3 bytes each, one float per byte:
 *      exact in float32, bf16 and fp16 alike);
 *   3. one all-reduce of [slots | rest of the step buffer | loss]: a slot's sum is its rank's rows
 *      (x + 0 = x), so the all-reduce all-gathers the rows while it sums the rest, with the rest's
 *      head start and --grad-compression's 16 bits on the rows too;
 *   4. every rank sets the head to +0 and adds the slots' rows in rank order.
 * Rows no rank sent are zero on every rank: their dense sum is 0 too. Every rank computes the same
 * sums in the same order, so replicas stay identical. With 2 ranks and a float32 wire the result is
 * the dense all-reduce's, bit for bit (x + y = y + x, and +0 + x = x; only the sign of a zero sum
 * of two -0 could differ); with 3+ ranks or a 16-bit wire the same sums within rounding (another
 * order; each rank's rows are rounded to 16 bits alone, not as partial sums). At the defaults on 2
 * ranks the all-reduce moves 6.7 MiB instead of 11.3. PyTorch DDP all-reduces such a gradient
 * densely unless the embedding is `sparse=True`.
 */
import type { ProcessGroup } from './comm/process_group.js';
import type { Compression } from './comm/wire.js';
import type { GradBuffer } from './grad_buffer.js';

/** The sparse head of the step buffer: rows [0, rows) of `width` floats each. */
export interface SparseRows {
  /** Rows of the head (the vocabulary size V). */
  readonly rows: number;
  /** Floats per row (d_model C). */
  readonly width: number;
  /** At most this many rows are sent per rank and step (its tokens per optimizer step, + 1). */
  readonly maxRows: number;
}

/** Floats of one rank's slot: count and ids as 3 bytes each, then the rows. */
function slotFloats(head: SparseRows): number {
  return 3 + 3 * head.maxRows + head.maxRows * head.width;
}

/**
 * The sparse head for a GPT step buffer, or undefined where the N slots would not take at most half
 * of the head (every rank decides alike, from the config).
 */
export function sparseRowsFor(vocabSize: number, dModel: number, tokensPerStep: number, worldSize: number): SparseRows | undefined {
  // One row more than the tokens: room for a row that only a NaN or infinity reached (allReduce).
  const head = { rows: vocabSize, width: dModel, maxRows: Math.min(vocabSize, tokensPerStep + 1) };
  return worldSize > 1 && 2 * worldSize * slotFloats(head) <= vocabSize * dModel ? head : undefined;
}

/**
 * The rows a step's tokens touched, and the sparse all-reduce of them. One per training run:
 * `touch` each micro-batch's input ids, then `allReduce` once per optimizer step (it clears them).
 * Memory: a flag per row, this rank's slot, and a copy of the N slots, made once.
 */
export class EmbeddingRows {
  private readonly touched: Uint8Array;
  private readonly ids: Int32Array;
  private count = 0;
  private readonly slot: Float32Array;
  private slots: Float32Array | undefined;
  /** Whether the rows outside `touched` were checked to be zero (the first step: see checkUntouched). */
  private checked = false;

  constructor(readonly head: SparseRows) {
    this.touched = new Uint8Array(head.rows);
    this.ids = new Int32Array(head.maxRows);
    this.slot = new Float32Array(slotFloats(head));
  }

  /** Mark the rows that a micro-batch's input ids (token ids < rows) look up. */
  touch(inputIds: Int32Array): void {
    for (const id of inputIds) {
      if (this.touched[id] === 1) continue;
      if (!(id >= 0 && id < this.head.rows) || this.count === this.head.maxRows) {
        throw new Error(
          `sparse embedding gradient: token id ${id} or more than ${this.head.maxRows} rows in one step; leave out --sparse-embedding-grad and report this`,
        );
      }
      this.touched[id] = 1;
      this.ids[this.count++] = id;
    }
  }

  /**
   * The all-reduce of `gb` (already pre-divided by the world size) with its head as the touched
   * rows, in place (see the top comment); clears the marks for the next step. `firstNonFinite`:
   * this rank's first non-finite index in `gb.flat` (ddp.ts preDivide), -1 when all is finite.
   */
  async allReduce(pg: ProcessGroup, gb: GradBuffer, wire: Compression | undefined, firstNonFinite = -1): Promise<void> {
    const { rows, width, maxRows } = this.head;
    const flat = gb.flat;
    const headLength = rows * width;
    const n = pg.worldSize;
    const slotLength = this.slot.length;
    const slotsAt = headLength - n * slotLength;
    // This rank's first NaN or infinity goes into the sum wherever it is, so that the step is
    // found non-finite as the dense all-reduce would find it (numerics.ts checkStep).
    if (firstNonFinite >= 0 && firstNonFinite < headLength) this.touch(Int32Array.of(Math.floor(firstNonFinite / width)));
    if (!this.checked) this.checkUntouched(flat);
    const slot = this.slot;
    slot.fill(0);
    putInt(slot, 0, this.count);
    for (let j = 0; j < this.count; j++) {
      const id = this.ids[j] as number;
      putInt(slot, 3 + 3 * j, id);
      slot.set(flat.subarray(id * width, (id + 1) * width), 3 + 3 * maxRows + j * width);
      this.touched[id] = 0;
    }
    this.count = 0;
    flat.fill(0, slotsAt, headLength);
    flat.set(slot, slotsAt + pg.rank * slotLength);
    await pg.allReduce(flat.subarray(slotsAt), 'sum', wire);
    this.slots ??= new Float32Array(n * slotLength);
    const slots = this.slots;
    slots.set(flat.subarray(slotsAt, headLength));
    // Every row of the head is set here, so every rank ends with the same bits (a row of -0 that
    // one rank kept would otherwise differ from another's +0).
    flat.fill(0, 0, headLength);
    for (let r = 0; r < n; r++) {
      const base = r * slotLength;
      const count = getInt(slots, base, maxRows, `rank ${r}'s row count`);
      for (let j = 0; j < count; j++) {
        const id = getInt(slots, base + 3 + 3 * j, rows - 1, `a row id of rank ${r}`);
        const at = id * width;
        const from = base + 3 + 3 * maxRows + j * width;
        for (let c = 0; c < width; c++) flat[at + c] = (flat[at + c] as number) + (slots[from + c] as number);
      }
    }
  }

  /**
   * Once per run, on its first step: the rows no token touched must hold zeros (the embedding's
   * gradient is a scatter-add into the looked-up rows); a model where that fails would otherwise
   * lose those gradients silently.
   */
  private checkUntouched(flat: Float32Array): void {
    this.checked = true;
    const { rows, width } = this.head;
    for (let id = 0; id < rows; id++) {
      if (this.touched[id] === 1) continue;
      for (let c = id * width; c < (id + 1) * width; c++) {
        if (flat[c] !== 0) {
          throw new Error(
            `sparse embedding gradient: row ${id}, which no token of the step looked up, is not zero; leave out --sparse-embedding-grad and report this`,
          );
        }
      }
    }
  }
}

/** v (< 2^24) as 3 floats, one byte each: integers below 256 survive any 16-bit wire and sums with zeros. */
function putInt(a: Float32Array, at: number, v: number): void {
  a[at] = v & 0xff;
  a[at + 1] = (v >>> 8) & 0xff;
  a[at + 2] = (v >>> 16) & 0xff;
}

function getInt(a: Float32Array, at: number, max: number, what: string): number {
  const [b0, b1, b2] = [a[at], a[at + 1], a[at + 2]] as [number, number, number];
  const v = b0 + 256 * b1 + 65536 * b2;
  if (![b0, b1, b2].every((b) => Number.isInteger(b) && b >= 0 && b < 256) || v > max) {
    throw new Error(
      `sparse embedding gradient: ${what} came out of the all-reduce as ${[b0, b1, b2].join(', ')} (at most ${max}); the ranks disagree on the step's layout`,
    );
  }
  return v;
}
