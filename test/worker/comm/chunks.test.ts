import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  allReduceSteps,
  chunkRange,
  mod,
  neighbours,
  recvChunk,
  reduceScatterSteps,
  segmentCount,
  segmentElemsFor,
  segmentRange,
  sendChunk,
  shardRange,
} from '../../../worker/comm/chunks.js';

test('chunks tile the buffer in order, sizes differ by at most one', () => {
  for (const worldSize of [1, 2, 3, 4, 5, 7, 8]) {
    for (const count of [0, 1, 2, worldSize - 1, worldSize, worldSize + 1, 97, 1000, 1001]) {
      let next = 0;
      const sizes: number[] = [];
      for (let c = 0; c < worldSize; c++) {
        const r = chunkRange(count, worldSize, c);
        assert.equal(r.lo, next, `count ${count} N ${worldSize} chunk ${c} starts where the previous ended`);
        assert.ok(r.hi >= r.lo);
        sizes.push(r.hi - r.lo);
        next = r.hi;
      }
      assert.equal(next, count);
      assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `sizes ${sizes}`);
    }
  }
});

test('segments tile a chunk, at most segmentElems each, at least one (maybe empty)', () => {
  for (const [lo, hi] of [
    [0, 0],
    [5, 5],
    [3, 4],
    [10, 110],
    [7, 1031],
  ]) {
    for (const segElems of [1, 3, 64, 100, 5000]) {
      const n = segmentCount(hi - lo, segElems);
      assert.ok(n >= 1);
      let next = lo;
      for (let j = 0; j < n; j++) {
        const s = segmentRange({ lo, hi }, segElems, j);
        assert.equal(s.lo, next);
        assert.ok(s.hi - s.lo <= segElems);
        if (hi > lo) assert.ok(s.hi > s.lo, 'no empty segment in a non-empty chunk');
        next = s.hi;
      }
      assert.equal(next, hi);
    }
  }
});

test('segment size in elements from bytes', () => {
  assert.equal(segmentElemsFor(1 << 20, 4), 262144);
  assert.equal(segmentElemsFor(1 << 20, 8), 131072);
  assert.equal(segmentElemsFor(3, 8), 1);
});

test('what a rank receives is what its left neighbour sends; reduce-scatter ends on the own chunk, the all-gather starts from it', () => {
  for (const n of [2, 3, 4, 5, 8]) {
    assert.equal(allReduceSteps(n), 2 * (n - 1));
    for (let r = 0; r < n; r++) {
      const { left, right } = neighbours(r, n);
      assert.equal(neighbours(left, n).right, r);
      assert.equal(neighbours(right, n).left, r);
      for (let step = 0; step < allReduceSteps(n); step++) {
        assert.equal(recvChunk(r, step, n), sendChunk(left, step, n));
        // What is received at one step is forwarded at the next.
        assert.equal(sendChunk(r, step + 1, n), recvChunk(r, step, n));
      }
      assert.equal(reduceScatterSteps(n), n - 1);
      assert.equal(recvChunk(r, n - 2, n), r);
      assert.deepEqual(shardRange(1001, n, r), chunkRange(1001, n, r));
      assert.equal(sendChunk(r, n - 1, n), r, 'the all-gather starts by sending the own chunk');
      // Over the reduce-scatter every chunk but the one sent first passes through each rank.
      const received = new Set(Array.from({ length: n - 1 }, (_, s) => recvChunk(r, s, n)));
      assert.equal(received.size, n - 1);
      assert.ok(!received.has(mod(r - 1, n)));
      // Over the all-gather every chunk but the own one arrives.
      const gathered = new Set(Array.from({ length: n - 1 }, (_, s) => recvChunk(r, n - 1 + s, n)));
      assert.equal(gathered.size, n - 1);
      assert.ok(!gathered.has(r));
    }
  }
});

test('mod is never negative', () => {
  assert.equal(mod(-1, 4), 3);
  assert.equal(mod(-8, 4), 0);
  assert.equal(mod(9, 4), 1);
});
