/**
 * The hierarchical all-reduce (comm/hierarchical.ts) on in-memory rings: the topology choice from
 * the ranks' places, and on 2 hosts × 2, 3 × 2 and 2 × 3 ranks the same bits on every rank, equal
 * to the flat ring's within float32 rounding, on the large path (reduce-scatter / all-reduce /
 * all-gather) and the small one, every op, with and without compression. The same over real
 * processes and sockets: test/integration/hierarchical.test.ts.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { ConfigError } from '../../../shared/errors.js';
import {
  chooseTopology,
  createTopologyGroup,
  DEFAULT_HIERARCHICAL_MIN_BYTES,
  hostLayout,
  HierarchicalGroup,
  piecesOf,
  type Place,
} from '../../../worker/comm/hierarchical.js';
import { createMemoryGroups } from '../../../worker/comm/memory_group.js';
import type { ProcessGroup, ReduceOp } from '../../../worker/comm/process_group.js';

/** Places of `hosts` × `local` ranks numbered host by host, as torchrun numbers them. */
function grid(hosts: number, local: number): Place[] {
  return Array.from({ length: hosts * local }, (_, r) => ({ nodeRank: Math.floor(r / local), localRank: r % local, localWorldSize: local }));
}

/** Rank r's input: values of every sign and magnitude, so that the summation order shows in the last bits. */
function input(rank: number, length: number): Float32Array {
  return Float32Array.from({ length }, (_, i) => Math.sin(i * 12.9898 + rank * 78.233) * 10 ** (((i + rank) % 7) - 3));
}

const hex = (a: Float32Array): string =>
  createHash('sha256')
    .update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength))
    .digest('hex');

/**
 * Hierarchical groups over in-memory worlds. `minBytes` 0 (the default here): every all-reduce
 * above the small path's size runs hierarchically, so that small buffers test that path too.
 */
async function groups(hosts: number, local: number, segmentBytes?: number, minBytes = 0): Promise<ProcessGroup[]> {
  const world = createMemoryGroups(hosts * local, { segmentBytes });
  const made = await Promise.all(world.map((g, r) => createTopologyGroup(g, grid(hosts, local)[r], 'auto', { minBytes })));
  for (const m of made) assert.equal(m.decision.topology, 'hierarchical');
  return made.map((m) => m.pg);
}

describe('topology choice', () => {
  it('auto: hierarchical on several hosts with the same number > 1 of workers, flat otherwise', () => {
    assert.equal(chooseTopology(grid(2, 2), 'auto').topology, 'hierarchical');
    assert.deepEqual(chooseTopology(grid(2, 3), 'auto').hosts, [
      [0, 1, 2],
      [3, 4, 5],
    ]);
    assert.equal(chooseTopology(grid(1, 4), 'auto').topology, 'flat');
    assert.equal(chooseTopology(grid(4, 1), 'auto').topology, 'flat');
    const uneven = [...grid(1, 3), { nodeRank: 1, localRank: 0, localWorldSize: 1 }];
    assert.equal(chooseTopology(uneven, 'auto').topology, 'flat');
    assert.equal(chooseTopology(grid(2, 2), 'flat').topology, 'flat');
    assert.match(chooseTopology(grid(2, 2), 'auto').describe, /^all-reduce: hierarchical \(2 hosts × 2 workers; auto\)/);
  });

  it('hosts come from the places, whatever order the ranks are numbered in', () => {
    const places = [0, 1, 1, 0].map((nodeRank, r) => ({ nodeRank, localRank: r % 2, localWorldSize: 2 }));
    assert.deepEqual(hostLayout(places).hosts, [
      [0, 3],
      [2, 1],
    ]);
  });

  it('hierarchical on a topology without that shape: one ConfigError line naming the shape', () => {
    const uneven = [...grid(1, 3), { nodeRank: 1, localRank: 0, localWorldSize: 1 }];
    for (const [places, shape] of [
      [grid(1, 4), '1 host with 4 workers'],
      [grid(3, 1), '3 hosts × 1 worker'],
      [uneven, '2 hosts with 3, 1 workers'],
    ] as const) {
      assert.throws(
        () => chooseTopology(places, 'hierarchical'),
        (e: unknown) =>
          e instanceof ConfigError &&
          e.message === `--allreduce-topology hierarchical needs several hosts with the same number (more than 1) of workers each; this run has ${shape}`,
      );
    }
  });

  it('ranks that disagree about LOCAL_WORLD_SIZE are not uniform', () => {
    const places = grid(2, 2).map((p, r) => (r === 3 ? { ...p, localWorldSize: 3 } : p));
    assert.equal(hostLayout(places).hosts, undefined);
  });
});

describe('hierarchical all-reduce (in memory)', () => {
  for (const [hosts, local] of [
    [2, 2],
    [3, 2],
    [2, 3],
  ] as const) {
    for (const length of [5, 300_001]) {
      it(`${hosts} hosts × ${local}: ${length} floats, every op, the same bits on every rank, the flat ring's result within rounding`, async () => {
        const hier = await groups(hosts, local, 64 << 10);
        assert.ok(hier[0] instanceof HierarchicalGroup);
        const flat = createMemoryGroups(hosts * local, { segmentBytes: 64 << 10 });
        for (const op of ['sum', 'mean', 'max', 'min'] as ReduceOp[]) {
          const a = hier.map((_, r) => input(r, length));
          const b = hier.map((_, r) => input(r, length));
          await Promise.all(hier.map((g, r) => g.allReduce(a[r], op)));
          await Promise.all(flat.map((g, r) => g.allReduce(b[r], op)));
          assert.equal(new Set(a.map(hex)).size, 1, `${op}: ranks differ`);
          // Every partial sum is within |terms| · 2^-24 of exact, in either order: bound the difference by the absolute sum.
          const inputs = hier.map((_, r) => input(r, length));
          const abs = Float64Array.from({ length }, (_, i) => inputs.reduce((s, x) => s + Math.abs(x[i]), 0));
          const scale = op === 'mean' ? 1 / (hosts * local) : 1;
          for (let i = 0; i < length; i++) {
            const tol = op === 'max' || op === 'min' ? 0 : 2 * hosts * local * 2 ** -24 * abs[i] * scale;
            assert.ok(Math.abs(a[0][i] - b[0][i]) <= tol, `${op} [${i}]: ${a[0][i]} vs flat ${b[0][i]}`);
          }
        }
        await Promise.all([...hier, ...flat].map((g) => g.close()));
      });
    }
  }

  it('2 hosts × 2, 10 MiB: cut into 3 pipelined pieces; the same bits on every rank, the flat ring within rounding', async () => {
    const length = 2_621_441;
    assert.equal(piecesOf(length, 4).length, 3);
    const hier = await groups(2, 2);
    const flat = createMemoryGroups(4);
    const inputs = hier.map((_, r) => input(r, length));
    const a = inputs.map((x) => x.slice());
    const b = inputs.map((x) => x.slice());
    await Promise.all(hier.map((g, r) => g.allReduce(a[r], 'sum')));
    await Promise.all(flat.map((g, r) => g.allReduce(b[r], 'sum')));
    assert.equal(new Set(a.map(hex)).size, 1);
    for (let i = 0; i < length; i++) {
      const abs = inputs.reduce((s, x) => s + Math.abs(x[i]), 0);
      if (!(Math.abs(a[0][i] - b[0][i]) <= 8 * 2 ** -24 * abs)) assert.fail(`[${i}]: ${a[0][i]} vs flat ${b[0][i]}`);
    }
    await Promise.all([...hier, ...flat].map((g) => g.close()));
  });

  it('between the small path and one piece (64 KiB < bytes < 4 MiB, the default) the flat ring runs: exactly its bits; from 4 MiB on not', async () => {
    const hier = await groups(2, 2, 64 << 10, DEFAULT_HIERARCHICAL_MIN_BYTES);
    const flat = createMemoryGroups(4, { segmentBytes: 64 << 10 });
    for (const [length, same] of [
      [262_144, true],
      [DEFAULT_HIERARCHICAL_MIN_BYTES / 4 - 1, true],
      [DEFAULT_HIERARCHICAL_MIN_BYTES / 4, false],
    ] as const) {
      const a = hier.map((_, r) => input(r, length));
      const b = hier.map((_, r) => input(r, length));
      await Promise.all(hier.map((g, r) => g.allReduce(a[r], 'sum')));
      await Promise.all(flat.map((g, r) => g.allReduce(b[r], 'sum')));
      assert.equal(new Set(a.map(hex)).size, 1);
      assert.equal(hex(a[0]) === hex(b[0]), same, `${length} floats: ${same ? 'not' : ''} the flat ring's bits`);
    }
  });

  it('with compression: the same bits on every rank, the exact tail exact, within 16-bit rounding of the flat sum', async () => {
    const hier = await groups(2, 2, 64 << 10);
    const length = 200_003;
    for (const format of ['bf16', 'fp16'] as const) {
      const a = hier.map((_, r) => input(r, length).map((v) => v / 100));
      await Promise.all(hier.map((g, r) => g.allReduce(a[r], 'sum', { format, exactTail: 1 })));
      assert.equal(new Set(a.map(hex)).size, 1);
      const inputs = hier.map((_, r) => input(r, length).map((v) => v / 100));
      const want = Float64Array.from({ length }, (_, i) => inputs.reduce((s, x) => s + x[i], 0));
      // The tail travels at float32: float32 rounding only.
      assert.ok(Math.abs(a[0][length - 1] - want[length - 1]) <= 1e-6 * Math.abs(want[length - 1]) + 1e-12);
      const rel = format === 'bf16' ? 2 ** -6 : 2 ** -9;
      let bad = 0;
      for (let i = 0; i < length; i++) {
        const absSum = inputs.reduce((s, x) => s + Math.abs(x[i]), 0);
        if (!(Math.abs(a[0][i] - want[i]) <= rel * absSum + 1e-7)) bad++;
      }
      assert.equal(bad, 0, `${format}: ${bad} elements off`);
    }
    await Promise.all(hier.map((g) => g.close()));
  });

  it('barrier, broadcast, allGather and ZeRO reduceScatter go through (reduceScatter: the flat world shard)', async () => {
    const hier = await groups(2, 2);
    await Promise.all(hier.map((g) => g.barrier()));
    const bufs = hier.map((_, r) => new Float32Array(10).fill(r + 1));
    await Promise.all(hier.map((g, r) => g.broadcast(bufs[r], 2)));
    for (const b of bufs) assert.ok(b.every((v) => v === 3));
    const all = await Promise.all(hier.map((g, r) => g.allGather(new Int32Array([r]))));
    for (const a of all)
      assert.deepEqual(
        a.map((x) => x[0]),
        [0, 1, 2, 3],
      );
    const rs = hier.map(() => new Float32Array(8).fill(1));
    await Promise.all(hier.map((g, r) => g.reduceScatter(rs[r])));
    rs.forEach((b, r) => assert.deepEqual([...b.subarray(2 * r, 2 * r + 2)], [4, 4]));
    await Promise.all(hier.map((g) => g.close()));
  });
});
