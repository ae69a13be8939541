/**
 * Overlap's pieces in one process: the bucket cut (ddp_overlap.ts bucketRanges), AdamW applied
 * bucket by bucket (optim.ts beginStep/stepRange) against one step, and BucketedAllReduce over an
 * in-memory world against ddp.ts averageGradients (same bits, starts in order as ranges arrive).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { averageGradients } from '../../worker/ddp.js';
import { bucketRanges, BucketedAllReduce } from '../../worker/ddp_overlap.js';
import { GradBuffer } from '../../worker/grad_buffer.js';
import { ADAMW_DEFAULTS, AdamW } from '../../worker/optim.js';
import { onRanks } from '../helpers/memory_ranks.js';

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296 - 0.5;
}

describe('bucketRanges', () => {
  it('cuts from the end at parameter boundaries once a bucket holds bucketBytes, the loss in bucket 0, the rest in the last', () => {
    // Sizes in floats: 4 bytes each.
    assert.deepEqual(bucketRanges([10, 3, 3, 3, 10], 36), [
      { lo: 19, hi: 30 }, // the last parameter (10) and the loss: 44 bytes
      { lo: 10, hi: 19 }, // 3 + 3 + 3 = 36 bytes
      { lo: 0, hi: 10 }, // what is left
    ]);
    // At 40 bytes the three small ones (36) are not enough: they share the last bucket.
    assert.deepEqual(bucketRanges([10, 3, 3, 3, 10], 40), [
      { lo: 19, hi: 30 },
      { lo: 0, hi: 19 },
    ]);
    // One big bucket when bucketBytes exceeds everything; every element once, in order, always.
    assert.deepEqual(bucketRanges([5, 5], 1 << 20), [{ lo: 0, hi: 11 }]);
    for (const bytes of [1, 4, 17, 64, 1000]) {
      const sizes = [7, 1, 30, 2, 2, 9];
      const b = bucketRanges(sizes, bytes);
      assert.equal(b[0]?.hi, 52);
      assert.equal(b.at(-1)?.lo, 0);
      b.forEach((r, i) => i > 0 && assert.equal(r.hi, b[i - 1]?.lo));
    }
  });
});

describe('AdamW bucket by bucket', () => {
  it('beginStep + stepRange over any cut gives step()’s bits (SIMD and JavaScript)', () => {
    for (const simd of [true, false]) {
      const n = 40_000;
      const rand = lcg(9);
      const p0 = Float32Array.from({ length: n }, () => rand());
      const whole = new AdamW(n, ADAMW_DEFAULTS, { simd });
      const pieces = new AdamW(n, ADAMW_DEFAULTS, { simd });
      const [pw, pp] = [p0.slice(), p0.slice()];
      for (let step = 0; step < 3; step++) {
        const g = Float32Array.from({ length: n }, () => rand() * 1e-2);
        whole.step(pw, g);
        const at = pieces.beginStep();
        // Odd cuts, from the end (as buckets arrive).
        const cuts = [0, 3, 16_387, 16_390, 33_333, n];
        for (let k = cuts.length - 1; k > 0; k--) pieces.stepRange(pp, g, cuts[k - 1] as number, cuts[k] as number, at);
      }
      assert.equal(pieces.stepCount, 3);
      assert.deepEqual(Buffer.from(pp.buffer), Buffer.from(pw.buffer), `simd ${simd}: weights`);
      assert.deepEqual(Buffer.from(pieces.m.slice().buffer), Buffer.from(whole.m.slice().buffer));
      assert.deepEqual(Buffer.from(pieces.v.slice().buffer), Buffer.from(whole.v.slice().buffer));
      assert.throws(() => pieces.stepRange(pp, new Float32Array(n), 5, n + 1, pieces.beginStep()), /stepRange: \[5, 40001\)/);
    }
  });
});

describe('BucketedAllReduce', () => {
  it('3 ranks, 2 micro-batches: buckets start in order as their parameters arrive, and end with averageGradients’ bits', async () => {
    const sizes = [50, 20, 20, 20, 60];
    const n = 170;
    const results = await onRanks(3, async (pg) => {
      const rand = lcg(100 + pg.rank);
      const micro1 = Float32Array.from({ length: n }, () => rand());
      const micro2 = Float32Array.from({ length: n }, () => rand());
      // Reference: accumulate, average, one all-reduce.
      const ref = new GradBuffer(n, 2);
      ref.microGrads().set(micro1);
      ref.accumulate(1.5 + pg.rank);
      ref.microGrads().set(micro2);
      ref.accumulate(2.5);
      ref.average();
      await averageGradients(pg, ref);
      // Overlap: micro-batch 1 as usual, micro-batch 2 parameter by parameter, last first.
      const gb = new GradBuffer(n, 2);
      gb.microGrads().set(micro1);
      gb.accumulate(1.5 + pg.rank);
      const buckets = new BucketedAllReduce(pg, gb, sizes, 100, 'none');
      assert.deepEqual(buckets.buckets, [
        { lo: 110, hi: 171 },
        { lo: 70, hi: 110 },
        { lo: 0, hi: 70 },
      ]);
      const started: number[] = [];
      buckets.begin((r) => started.push(r.lo));
      buckets.loss(2.5);
      const offsets = [0, 50, 70, 90, 110];
      for (let i = sizes.length - 1; i >= 0; i--) {
        const lo = offsets[i] as number;
        gb.microGrads().set(micro2.subarray(lo, lo + (sizes[i] as number)), lo);
        buckets.ready(lo, lo + (sizes[i] as number));
        // Bucket 1 (70..110) starts once parameters 3 and 2 are in, not before.
        if (i === 3) assert.deepEqual(started, [110]);
        if (i === 2) assert.deepEqual(started, [110, 70]);
      }
      const reduced: number[] = [];
      assert.equal(await buckets.finish((r) => reduced.push(r.lo)), undefined);
      assert.deepEqual(started, [110, 70, 0]);
      assert.deepEqual(reduced, [110, 70, 0]);
      return [gb.flat, ref.flat];
    });
    for (const [got, want] of results) assert.deepEqual(Buffer.from((got as Float32Array).buffer), Buffer.from((want as Float32Array).buffer));
  });

  it('finish before backward reported everything is a bug, said so', async () => {
    await onRanks(2, async (pg) => {
      const gb = new GradBuffer(10);
      const buckets = new BucketedAllReduce(pg, gb, [5, 5], 20, 'none');
      buckets.begin();
      buckets.loss(1);
      buckets.ready(5, 10);
      await assert.rejects(buckets.finish(), /backward reported all but 5 elements of the step buffer \(bucket 1 never started\)/);
      // Let the started bucket finish on both ranks.
      buckets.ready(0, 5);
      await buckets.finish();
    });
  });
});
