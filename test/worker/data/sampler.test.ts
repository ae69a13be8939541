import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../../../shared/errors.js';
import { mixSeed, permutation } from '../../../worker/rng.js';
import { DistributedSampler, rescaleSamplerState, ShardStream } from '../../../worker/data/sampler.js';

const samplers = (size: number, worldSize: number, opts: { seed?: number; dropLast?: boolean } = {}) =>
  Array.from({ length: worldSize }, (_, rank) => new DistributedSampler(size, { worldSize, rank, seed: opts.seed ?? 0, dropLast: opts.dropLast }));

/** How often each index appears in `arrays` together. */
function counts(arrays: Iterable<ArrayLike<number>>): Map<number, number> {
  const c = new Map<number, number>();
  for (const a of arrays) for (let i = 0; i < a.length; i++) c.set(a[i], (c.get(a[i]) ?? 0) + 1);
  return c;
}

describe('permutation and seeds', () => {
  it('is a permutation, fixed by its seed', () => {
    const p = permutation(1000, 5);
    assert.deepEqual([...p].sort((a, b) => a - b), Array.from({ length: 1000 }, (_, i) => i));
    assert.deepEqual(permutation(1000, 5), p);
    assert.notDeepEqual(permutation(1000, 6), p);
    assert.notDeepEqual([...p], Array.from({ length: 1000 }, (_, i) => i));
  });
  it('mixSeed separates nearby inputs', () => {
    const seen = new Set<number>();
    for (let step = 0; step < 100; step++) for (let rank = 0; rank < 4; rank++) seen.add(mixSeed(0, step, 0, rank));
    assert.equal(seen.size, 400);
    assert.equal(mixSeed(1, 2, 3), mixSeed(1, 2, 3));
  });
});

describe('DistributedSampler', () => {
  it('gives every rank the same epoch order, seeded by seed + epoch', () => {
    const s = samplers(100, 3, { seed: 4 });
    for (const r of s) assert.deepEqual(r.epochOrder(2), s[0].epochOrder(2));
    // seed 4, epoch 2 and seed 5, epoch 1 are the same permutation (PyTorch: seed + epoch).
    assert.deepEqual(s[0].epochOrder(2).subarray(0, 100), permutation(100, 6));
  });

  it('uses every index exactly once per epoch when the world size divides the split', () => {
    const s = samplers(12, 4);
    for (const epoch of [0, 1]) {
      const c = counts(s.map((r) => r.shard(epoch)));
      assert.equal(c.size, 12);
      assert.ok([...c.values()].every((n) => n === 1));
    }
  });

  it('shards are strided: rank r takes order[r], order[r + W], ...', () => {
    const s = samplers(12, 4, { seed: 9 });
    const order = s[0].epochOrder(0);
    for (let rank = 0; rank < 4; rank++) assert.deepEqual([...s[rank].shard(0)], [order[rank], order[rank + 4], order[rank + 8]]);
  });

  it('pads by wrapping to equal shards', () => {
    const s = samplers(10, 4, { seed: 1 });
    assert.equal(s[0].numSamples, 3);
    assert.equal(s[0].totalSize, 12);
    const order = s[0].epochOrder(0);
    const perm = permutation(10, 1);
    assert.deepEqual([...order], [...perm, perm[0], perm[1]]);
    const c = counts(s.map((r) => r.shard(0)));
    assert.equal(c.size, 10);
    assert.deepEqual([...c.entries()].filter(([, n]) => n === 2).map(([i]) => i).sort(), [perm[0], perm[1]].sort());
    for (const r of s) assert.equal(r.shard(0).length, 3);
  });

  it('pads a split smaller than the world by repeating it', () => {
    const s = samplers(3, 8, { seed: 2 });
    const perm = permutation(3, 2);
    assert.deepEqual([...s[0].epochOrder(0)], [0, 1, 2, 3, 4, 5, 6, 7].map((i) => perm[i % 3]));
  });

  it('drop_last cuts to a multiple of the world size', () => {
    const s = samplers(10, 4, { seed: 1, dropLast: true });
    assert.equal(s[0].numSamples, 2);
    const c = counts(s.map((r) => r.shard(0)));
    assert.equal(c.size, 8);
    assert.ok([...c.values()].every((n) => n === 1));
    assert.deepEqual([...c.keys()].sort(), [...permutation(10, 1).subarray(0, 8)].sort());
  });

  it('reshuffles each epoch', () => {
    const [s] = samplers(50, 1);
    assert.notDeepEqual(s.shard(0), s.shard(1));
    assert.deepEqual([...s.shard(1)].sort((a, b) => a - b), [...s.shard(0)].sort((a, b) => a - b));
  });

  it('rejects a split too small for drop_last', () => {
    assert.throws(() => samplers(3, 4, { dropLast: true }), ConfigError);
  });
});

describe('ShardStream', () => {
  it('walks into the next epoch on its own, and resumes from its state', () => {
    const [s] = samplers(10, 2, { seed: 3 });
    const stream = new ShardStream(s);
    const first = stream.take(4);
    const second = stream.take(4); // crosses from epoch 0 (5 indices) into epoch 1
    assert.deepEqual([...first, ...second], [...s.shard(0), ...s.shard(1).subarray(0, 3)]);
    assert.deepEqual(stream.state(), { epoch: 1, position: 3 });
    const resumed = new ShardStream(s, stream.state());
    assert.deepEqual(resumed.take(7), stream.take(7));
  });

  it('carries a state over to another world size at the same share of the epoch', () => {
    assert.deepEqual(rescaleSamplerState({ epoch: 3, position: 40 }, 2, 4), { epoch: 3, position: 20 });
    assert.deepEqual(rescaleSamplerState({ epoch: 3, position: 40 }, 2, 2), { epoch: 3, position: 40 });
    // A position past the end of the new shard moves into the next epoch.
    const [s] = samplers(10, 2);
    assert.deepEqual(new ShardStream(s, { epoch: 0, position: 7 }).state(), { epoch: 1, position: 2 });
  });
});
