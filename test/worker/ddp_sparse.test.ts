/**
 * ddp_sparse.ts over N ranks of an in-memory ring in this process (worker/comm/memory_group.ts):
 * the sparse head's all-reduce against the dense one of the same step buffers.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { onRanks } from '../helpers/memory_ranks.js';
import { averageGradients } from '../../worker/ddp.js';
import { EmbeddingRows, sparseRowsFor, type SparseRows } from '../../worker/ddp_sparse.js';
import { GradBuffer } from '../../worker/grad_buffer.js';

const HEAD: SparseRows = { rows: 200, width: 8, maxRows: 12 };
const REST = 1000;

/** Rank r's touched rows: 0-3 on every rank, then (r·5 + k·7) mod 200, 12 in all. */
function touchedRows(rank: number): Int32Array {
  const rows = new Set([0, 1, 2, 3]);
  for (let k = 0; rows.size < HEAD.maxRows; k++) rows.add((rank * 5 + k * 7) % HEAD.rows);
  return Int32Array.from(rows);
}

/** Rank r's step buffer: its touched head rows not zero, the others zero, a dense rest, the loss. */
function stepBuffer(rank: number): Float32Array {
  const flat = new Float32Array(HEAD.rows * HEAD.width + REST + 1);
  let x = 1234 + rank;
  const next = (): number => {
    x = (x * 1103515245 + 12345) >>> 0;
    return (x / 2 ** 32 - 0.5) * 3;
  };
  for (const id of touchedRows(rank)) for (let c = 0; c < HEAD.width; c++) flat[id * HEAD.width + c] = next();
  for (let i = HEAD.rows * HEAD.width; i < flat.length; i++) flat[i] = next();
  return flat;
}

/** The rows of rank `rank`'s step, touched (as the trainer does with each micro-batch's input ids). */
function rowsOf(rank: number, head: SparseRows = HEAD): EmbeddingRows {
  const rows = new EmbeddingRows(head);
  rows.touch(touchedRows(rank));
  return rows;
}

async function average(n: number, sparse: boolean): Promise<Float32Array[]> {
  return onRanks(n, async (pg) => {
    const gb = new GradBuffer(stepBuffer(pg.rank));
    await averageGradients(pg, gb, 'none', sparse ? rowsOf(pg.rank) : undefined);
    return gb.flat;
  });
}

describe('sparse embedding rows', () => {
  it('with 2 ranks: the dense all-reduce, bit for bit; with 3 and 4: within float32 rounding, the same bits on every rank', async () => {
    for (const n of [2, 3, 4]) {
      const sparse = await average(n, true);
      const dense = await average(n, false);
      for (const s of sparse) assert.deepEqual(new Uint32Array(s.buffer), new Uint32Array((sparse[0] as Float32Array).buffer), `${n} ranks: replicas`);
      const s = sparse[0] as Float32Array;
      const d = dense[0] as Float32Array;
      if (n === 2) assert.deepEqual(new Uint32Array(s.buffer), new Uint32Array(d.buffer));
      else s.forEach((v, i) => assert.ok(Math.abs(v - (d[i] as number)) <= 1e-6 * Math.max(1, Math.abs(d[i] as number)), `${n} ranks [${i}]: ${v} vs ${d[i]}`));
      // Rows no rank touched stay zero; the loss is averaged.
      assert.ok(
        s.subarray(150 * HEAD.width, 151 * HEAD.width).every((v) => v === 0),
        `${n} ranks: an untouched row`,
      );
      assert.notEqual(s[s.length - 1], 0);
    }
  });

  it('a non-finite value reaches every rank, also in a row no token of the step looked up', async () => {
    // Row 5 is one of rank 1's rows; row 150 is nobody's (a NaN there comes from a bug, or the tests' poisoning hook).
    for (const row of [5, 150]) {
      const out = await onRanks(2, async (pg) => {
        const flat = stepBuffer(pg.rank);
        if (pg.rank === 1) flat[row * HEAD.width + 3] = Number.NaN;
        const gb = new GradBuffer(flat);
        const mine = await averageGradients(pg, gb, 'none', rowsOf(pg.rank, { ...HEAD, maxRows: HEAD.maxRows + 1 }));
        return { nan: Number.isNaN(gb.flat[row * HEAD.width + 3]), mine };
      });
      assert.deepEqual(
        out.map((o) => o.nan),
        [true, true],
        `row ${row}`,
      );
      assert.equal(out[1]?.mine?.index, row * HEAD.width + 3);
    }
  });

  it('a value in a row no token looked up is a bug, said as such on the first step', async () => {
    const results = await Promise.allSettled([
      onRanks(2, async (pg) => {
        const gb = new GradBuffer(stepBuffer(pg.rank));
        gb.flat[150 * HEAD.width] = 1;
        await averageGradients(pg, gb, 'none', rowsOf(pg.rank));
      }),
    ]);
    assert.equal(results[0]?.status, 'rejected');
    assert.match(String((results[0] as PromiseRejectedResult).reason), /row 150, which no token of the step looked up, is not zero/);
  });

  it('more rows than the step has tokens is a bug, said as such', () => {
    const rows = new EmbeddingRows({ ...HEAD, maxRows: 3 });
    assert.throws(() => rows.touch(Int32Array.of(1, 2, 3, 4)), /more than 3 rows in one step/);
    assert.throws(() => new EmbeddingRows(HEAD).touch(Int32Array.of(200)), /token id 200/);
  });

  it('the same rows over several steps: the marks are cleared after each', async () => {
    const out = await onRanks(2, async (pg) => {
      const rows = new EmbeddingRows(HEAD);
      const results: Float32Array[] = [];
      for (let step = 0; step < 3; step++) {
        rows.touch(touchedRows(pg.rank));
        const gb = new GradBuffer(stepBuffer(pg.rank));
        await averageGradients(pg, gb, 'none', rows);
        results.push(gb.flat);
      }
      return results;
    });
    for (const r of out) for (const f of r) assert.deepEqual(f, out[0]?.[0]);
  });

  it("is chosen only where every rank's rows move at most half the dense rows' bytes", () => {
    assert.deepEqual(sparseRowsFor(10000, 128, 256, 2), { rows: 10000, width: 128, maxRows: 257 });
    assert.equal(sparseRowsFor(10000, 128, 256, 1), undefined);
    assert.equal(sparseRowsFor(256, 128, 1024, 2), undefined);
    assert.equal(sparseRowsFor(64, 16, 16, 2), undefined);
    assert.notEqual(sparseRowsFor(512, 32, 16, 3), undefined);
  });
});
