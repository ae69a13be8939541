/**
 * newGroup on in-memory rings (memory_group.ts) and the dp × tp mesh (mesh.ts): members and
 * non-members, sums, independence of the groups' sequence numbers, ranks that disagree, and a
 * stalled subgroup's error naming the group.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CommError, ConfigError } from '../../../shared/errors.js';
import { createMemoryGroups } from '../../../worker/comm/memory_group.js';
import { createMesh, describeMesh, meshLayout } from '../../../worker/comm/mesh.js';
import { SingleProcessGroup } from '../../../worker/comm/process_group.js';

describe('newGroup (in memory)', () => {
  it('members get a group of their own (group ranks, sums), the others undefined', async () => {
    const world = createMemoryGroups(5);
    const subs = await Promise.all(world.map((g) => g.newGroup([3, 1, 4])));
    assert.deepEqual(
      subs.map((s) => (s === undefined ? null : [s.rank, s.worldSize])),
      [null, [1, 3], null, [0, 3], [2, 3]],
    );
    const bufs = [1, 3, 4].map((r) => new Float32Array(1000).fill(r));
    await Promise.all([subs[1]!, subs[3]!, subs[4]!].map((s, i) => s.allReduce(bufs[i])));
    for (const b of bufs) assert.ok(b.every((v) => v === 8));
    // The world's sequence numbers are untouched by the subgroup's collectives.
    await Promise.all(world.map((g) => g.barrier()));
    assert.deepEqual(
      world[0].recentCollectives().map((c) => [c.seq, c.op]),
      [[1, 'barrier()']],
    );
    await Promise.all(world.map((g) => g.close()));
  });

  it('ranks that ask for different groups fail with a CommError naming both lists', async () => {
    const world = createMemoryGroups(2);
    const results = await Promise.allSettled([world[0].newGroup([0, 1]), world[1].newGroup([1, 0])]);
    assert.ok(
      results.some(
        (r) => r.status === 'rejected' && r.reason instanceof CommError && /asked for ranks \[1,0\], another rank for \[0,1\]/.test(r.reason.message),
      ),
    );
    await assert.rejects(world[0].newGroup([0, 0]), /repeat a rank/);
    await assert.rejects(world[0].newGroup([2]), /2 is not a rank of a world of 2/);
  });

  it('a stalled subgroup collective fails naming the group and the rank that did not call it', async () => {
    const world = createMemoryGroups(3, { collectiveTimeoutMs: 300 });
    const subs = await Promise.all(world.map((g) => g.newGroup([0, 2])));
    await assert.rejects(subs[0]!.allReduce(new Float32Array(4)), (e: unknown) => {
      assert.ok(e instanceof CommError);
      assert.match(
        e.message,
        /^group 1 \(ranks 0,2\): #1 allReduce\(sum, float32\[4\]\) on rank 0 timed out .*ranks that did not take part: 1 \(has not called it/,
      );
      return true;
    });
    await Promise.all(world.map((g) => g.close()));
    await Promise.all(subs.map((s) => s?.close()));
  });

  it('SingleProcessGroup: newGroup([0]) is a world of one', async () => {
    const g = await new SingleProcessGroup().newGroup([0]);
    assert.deepEqual([g?.rank, g?.worldSize], [0, 1]);
  });
});

describe('mesh', () => {
  it('layout: TP groups of consecutive ranks, DP groups across; tp must divide the world', () => {
    const m = meshLayout(8, 2);
    assert.deepEqual(m.tpGroups, [
      [0, 1],
      [2, 3],
      [4, 5],
      [6, 7],
    ]);
    assert.deepEqual(m.dpGroups, [
      [0, 2, 4, 6],
      [1, 3, 5, 7],
    ]);
    assert.equal(describeMesh(meshLayout(4, 2)), 'mesh: dp 2 × tp 2; TP groups [0,1] [2,3]; DP groups [0,2] [1,3]');
    assert.throws(
      () => meshLayout(6, 4),
      (e: unknown) => e instanceof ConfigError && /--tensor-parallel-size 4 does not divide the world size 6/.test(e.message),
    );
  });

  it('tp 2 × dp 3 in memory: each rank sums over its TP and its DP group, both at once', async () => {
    const world = createMemoryGroups(6);
    const meshes = await Promise.all(world.map((g) => createMesh(g, 2)));
    await Promise.all(
      meshes.map(async (m, r) => {
        assert.deepEqual([m.tpRank, m.dpRank, m.tp.rank, m.dp.rank], [r % 2, Math.floor(r / 2), r % 2, Math.floor(r / 2)]);
        const a = new Float32Array(300).fill(r);
        const b = new Float64Array(300).fill(r);
        await Promise.all([m.tp.allReduce(a), m.dp.allReduce(b)]);
        const tpSum = Math.floor(r / 2) * 4 + 1; // r even: r + r+1
        const dpSum = (r % 2) * 3 + 6; // 0+2+4 or 1+3+5
        assert.ok(
          a.every((v) => v === tpSum),
          `rank ${r} tp ${a[0]}`,
        );
        assert.ok(
          b.every((v) => v === dpSum),
          `rank ${r} dp ${b[0]}`,
        );
      }),
    );
    await Promise.all(world.map((g) => g.close()));
  });
});
