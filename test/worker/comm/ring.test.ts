/**
 * The ring collectives and the group's failure handling, N ranks in one process over the
 * in-memory transport (which hands payloads over without copying, like ZeroMQ).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CommError } from '../../../shared/errors.js';
import { createMemoryGroups } from '../../../worker/comm/memory_group.js';
import type { FloatArray, ReduceOp } from '../../../worker/comm/process_group.js';
import { createReducer } from '../../../worker/comm/reduce.js';
import { shardRange } from '../../../worker/comm/chunks.js';
import { chooseAllReduce, DEFAULT_GATHER_BYTES } from '../../../worker/comm/ring_group_options.js';

/** Deterministic values in [-50, 50). */
function random(n: number, seed: number): number[] {
  let x = (seed * 2654435761) >>> 0 || 1;
  return Array.from({ length: n }, () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return ((x >>> 0) / 2 ** 32 - 0.5) * 100;
  });
}

/** Float64 reference of `op` over the ranks' inputs, element by element. */
function reference(inputs: FloatArray[], op: ReduceOp): Float64Array {
  const out = new Float64Array(inputs[0].length);
  for (let i = 0; i < out.length; i++) {
    const xs = inputs.map((a) => a[i]);
    const sum = xs.reduce((s, x) => s + x, 0);
    out[i] = op === 'sum' ? sum : op === 'mean' ? sum / xs.length : op === 'max' ? Math.max(...xs) : Math.min(...xs);
  }
  return out;
}

function assertClose(got: FloatArray, want: Float64Array, inputs: FloatArray[], what: string): void {
  const eps = got instanceof Float32Array ? 2 ** -23 : 2 ** -52;
  for (let i = 0; i < want.length; i++) {
    const scale = inputs.reduce((s, a) => s + Math.abs(a[i]), 0);
    const tol = 2 * inputs.length * eps * scale + 1e-30;
    // Written so that NaN fails too.
    if (!(Math.abs(got[i] - want[i]) <= tol)) assert.fail(`${what}: element ${i} is ${got[i]}, want ${want[i]} ± ${tol}`);
  }
}

for (const path of ['ring', 'gather'] as const) {
  test(`allReduce (${path}): every world size, odd lengths, every op, both float types, many segments`, async () => {
    for (const worldSize of [1, 2, 3, 4, 5, 8]) {
      for (const count of [0, 1, worldSize - 1, worldSize + 1, 97, 1031]) {
        for (const Ctor of [Float32Array, Float64Array]) {
          for (const op of ['sum', 'mean', 'max', 'min'] as ReduceOp[]) {
            // 40-byte segments: several segments per chunk, and a last one shorter than the others.
            const groups = createMemoryGroups(worldSize, { segmentBytes: 40, allReduceAlgorithm: path });
            const inputs = groups.map((g) => Ctor.from(random(count, g.rank + count)));
            const bufs = inputs.map((a) => a.slice());
            await Promise.all(groups.map((g) => g.allReduce(bufs[g.rank], op)));
            const what = `N=${worldSize} ${Ctor.name}[${count}] ${op}`;
            assertClose(bufs[0], reference(inputs, op), inputs, what);
            for (const b of bufs) assert.deepEqual(b, bufs[0], `${what}: every rank has the same bits`);
          }
        }
      }
    }
  });
}

test('the group chooses the algorithm by size, visibly; gatherBytes and a forced algorithm override it', () => {
  assert.equal(chooseAllReduce(4096, 2, DEFAULT_GATHER_BYTES), 'gather');
  assert.equal(chooseAllReduce(DEFAULT_GATHER_BYTES + 4, 2, DEFAULT_GATHER_BYTES), 'ring');
  assert.equal(chooseAllReduce(32 << 10, 3, DEFAULT_GATHER_BYTES), 'gather', '(N-1) x bytes decides');
  assert.equal(chooseAllReduce(33 << 10, 3, DEFAULT_GATHER_BYTES), 'ring');
  const [auto] = createMemoryGroups(2);
  assert.equal(auto.allReduceAlgorithm(1 << 20), 'ring');
  assert.equal(auto.allReduceAlgorithm(100), 'gather');
  assert.equal(createMemoryGroups(2, { gatherBytes: 0 })[0].allReduceAlgorithm(100), 'ring');
  assert.equal(createMemoryGroups(2, { allReduceAlgorithm: 'gather' })[0].allReduceAlgorithm(1 << 30), 'gather');
});

test('reduceScatter leaves the reduced shard in place and the rest untouched; allGatherChunks completes it', async () => {
  for (const worldSize of [1, 2, 3, 5, 8]) {
    for (const count of [0, 1, worldSize - 1, worldSize + 1, 97, 1031]) {
      for (const Ctor of [Float32Array, Float64Array]) {
        for (const op of ['sum', 'mean', 'max', 'min'] as ReduceOp[]) {
          // 'auto' with 64-byte all-gathers at most: small ones take the gather path, the others the ring.
          const algorithm = count % 2 === 0 ? 'ring' : 'auto';
          const opts = { segmentBytes: 40, maxDelayMs: 1, seed: count, allReduceAlgorithm: algorithm, gatherBytes: 64 } as const;
          const groups = createMemoryGroups(worldSize, opts);
          const inputs = groups.map((g) => Ctor.from(random(count, g.rank + count + 3)));
          const bufs = inputs.map((a) => a.slice());
          await Promise.all(groups.map((g) => g.reduceScatter(bufs[g.rank], op)));
          const what = `N=${worldSize} ${Ctor.name}[${count}] ${op} ${algorithm}`;
          const want = reference(inputs, op);
          // What the all-reduce gives, bit for bit.
          const full = inputs.map((a) => a.slice());
          await Promise.all(createMemoryGroups(worldSize, opts).map((g) => g.allReduce(full[g.rank], op)));
          for (const g of groups) {
            const { lo, hi } = shardRange(count, worldSize, g.rank);
            const shard = bufs[g.rank].subarray(lo, hi);
            assertClose(
              shard,
              want.subarray(lo, hi),
              inputs.map((a) => a.subarray(lo, hi)),
              `${what} rank ${g.rank}`,
            );
            assert.deepEqual(shard, full[0].subarray(lo, hi), `${what}: the shard has the all-reduce's bits`);
            assert.deepEqual(bufs[g.rank].subarray(0, lo), inputs[g.rank].subarray(0, lo), `${what}: before the shard untouched`);
            assert.deepEqual(bufs[g.rank].subarray(hi), inputs[g.rank].subarray(hi), `${what}: after the shard untouched`);
          }
          await Promise.all(groups.map((g) => g.allGatherChunks(bufs[g.rank])));
          for (const b of bufs) assert.deepEqual(b, full[0], `${what}: reduceScatter + allGatherChunks = allReduce`);
        }
      }
    }
  }
});

test('allGatherChunks gathers every element type', async () => {
  for (const worldSize of [2, 3, 4]) {
    const groups = createMemoryGroups(worldSize, { segmentBytes: 16 });
    for (const Ctor of [Float32Array, Float64Array, Int32Array, Uint8Array]) {
      const want = Ctor.from(random(45, worldSize).map((x) => Math.abs(Math.round(x))));
      const bufs = groups.map((g) => {
        const b = new Ctor(45);
        const { lo, hi } = shardRange(45, worldSize, g.rank);
        b.set(want.subarray(lo, hi), lo);
        return b;
      });
      await Promise.all(groups.map((g) => g.allGatherChunks(bufs[g.rank])));
      for (const b of bufs) assert.deepEqual(b, want, `N=${worldSize} ${Ctor.name}`);
    }
  }
});

test('allReduce with the plain JavaScript reducer and one-element segments', async () => {
  const groups = createMemoryGroups(3, { segmentBytes: 1, reducer: createReducer('js') });
  const inputs = groups.map((g) => Float32Array.from(random(50, g.rank)));
  const bufs = inputs.map((a) => a.slice());
  await Promise.all(groups.map((g) => g.allReduce(bufs[g.rank])));
  assertClose(bufs[2], reference(inputs, 'sum'), inputs, 'js reducer');
});

// recycle: the transport hands out memory for combined segments and reuses it (poisoned with
// NaN first) as soon as the group's collectiveEnded allows, as the ZeroMQ transport does.
for (const recycle of [false, true])
  test(`buffers are not read after a collective resolves (zero-copy sends${recycle ? ', sent memory reused' : ''})`, async () => {
    for (const [worldSize, gatherBytes] of [
      [2, 0],
      [3, 0],
      [5, 0],
      [3, 1 << 30],
    ]) {
      const groups = createMemoryGroups(worldSize, { segmentBytes: 64, maxDelayMs: 2, seed: worldSize, gatherBytes, recycle });
      const n = groups.length;
      for (let round = 0; round < 6; round++) {
        const inputs = groups.map((g) => Float32Array.from(random(301, g.rank + 10 * round)));
        const bufs = inputs.map((a) => a.slice());
        const results: Float32Array[] = [];
        // Each rank trashes its buffer the moment its own collective resolves, as a training loop
        // would by writing the next gradients; the other ranks must not see that.
        await Promise.all(
          groups.map(async (g) => {
            await g.allReduce(bufs[g.rank]);
            results[g.rank] = bufs[g.rank].slice();
            bufs[g.rank].fill(NaN);
          }),
        );
        for (const r of results) assertClose(r, reference(inputs, 'sum'), inputs, `allReduce N=${worldSize}`);

        const root = round % worldSize;
        const data = groups.map((g) => Int32Array.from(random(77, g.rank + 100), Math.round));
        const want = data[root].slice();
        const got: Int32Array[] = [];
        await Promise.all(
          groups.map(async (g) => {
            await g.broadcast(data[g.rank], root);
            got[g.rank] = data[g.rank].slice();
            data[g.rank].fill(-1);
          }),
        );
        for (const d of got) assert.deepEqual(d, want);

        const mine = groups.map((g) => Float64Array.from(random(33, g.rank + 200)));
        const wantAll = mine.map((m) => m.slice());
        const gathered = await Promise.all(
          groups.map(async (g) => {
            const res = await g.allGather(mine[g.rank]);
            mine[g.rank].fill(NaN);
            return res;
          }),
        );
        for (const res of gathered) assert.deepEqual(res, wantAll);

        // ZeRO's pair: each rank trashes its gradients once its shard is reduced, and its
        // parameters once they are gathered.
        const grads = groups.map((g) => Float32Array.from(random(301, g.rank + 300 + round)));
        const wantSum = reference(grads, 'sum');
        const shards: Float32Array[] = [];
        await Promise.all(
          groups.map(async (g) => {
            await g.reduceScatter(grads[g.rank]);
            const { lo, hi } = shardRange(301, n, g.rank);
            shards[g.rank] = grads[g.rank].slice(lo, hi);
            grads[g.rank].fill(NaN);
          }),
        );
        groups.forEach((g) => {
          const { lo, hi } = shardRange(301, n, g.rank);
          assertClose(
            shards[g.rank],
            wantSum.subarray(lo, hi),
            grads.map(() => new Float32Array(hi - lo).fill(100)),
            `reduceScatter N=${n}`,
          );
        });
        const params = groups.map((g) => {
          const p = new Float32Array(301).fill(-7);
          const { lo, hi } = shardRange(301, n, g.rank);
          p.fill(g.rank, lo, hi);
          return p;
        });
        const gatheredParams = await Promise.all(
          groups.map(async (g) => {
            await g.allGatherChunks(params[g.rank]);
            const copy = params[g.rank].slice();
            params[g.rank].fill(NaN);
            return copy;
          }),
        );
        const wantParams = new Float32Array(301);
        groups.forEach((g) => {
          const { lo, hi } = shardRange(301, n, g.rank);
          wantParams.fill(g.rank, lo, hi);
        });
        for (const p of gatheredParams) assert.deepEqual(p, wantParams, `allGatherChunks N=${n}`);
      }
    }
  });

test('broadcast from every root, every element type', async () => {
  for (const worldSize of [1, 2, 4, 5]) {
    const groups = createMemoryGroups(worldSize, { segmentBytes: 16 });
    for (let root = 0; root < worldSize; root++) {
      for (const Ctor of [Float32Array, Float64Array, Int32Array, Uint8Array]) {
        for (const count of [0, 1, 45]) {
          const bufs = groups.map((g) => Ctor.from(random(count, g.rank * 7 + root).map((x) => Math.abs(Math.round(x)))));
          const want = bufs[root].slice();
          await Promise.all(groups.map((g) => g.broadcast(bufs[g.rank], root)));
          for (const b of bufs) assert.deepEqual(b, want, `N=${worldSize} root ${root} ${Ctor.name}[${count}]`);
        }
      }
    }
  }
});

test("allGather returns every rank's buffer by rank, as copies", async () => {
  for (const worldSize of [1, 2, 3, 8]) {
    const groups = createMemoryGroups(worldSize, { segmentBytes: 8 });
    const bufs = groups.map((g) => Uint8Array.from({ length: 13 }, (_, i) => g.rank * 16 + i));
    const all = await Promise.all(groups.map((g) => g.allGather(bufs[g.rank])));
    for (const res of all) {
      assert.deepEqual(res, bufs);
      assert.ok(res.every((a, r) => a !== bufs[r] && a.buffer !== bufs[r].buffer));
    }
  }
});

test('barrier resolves only once every rank has called it', async () => {
  const groups = createMemoryGroups(4);
  let done = 0;
  const first = groups.slice(0, 3).map((g) =>
    g.barrier().then(() => {
      done += 1;
    }),
  );
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  assert.equal(done, 0);
  await Promise.all([...first, groups[3].barrier()]);
  assert.equal(done, 3);
});

test('many collectives back to back keep their order', async () => {
  const groups = createMemoryGroups(3, { segmentBytes: 32 });
  await Promise.all(
    groups.map(async (g) => {
      for (let i = 0; i < 50; i++) {
        const b = new Float64Array(i % 7).fill(g.rank + i);
        await g.allReduce(b, 'max');
        assert.ok(b.every((x) => x === 2 + i));
        if (i % 5 === 0) await g.barrier();
      }
    }),
  );
});

async function rejections(promises: Promise<unknown>[]): Promise<CommError[]> {
  const settled = await Promise.allSettled(promises);
  return settled.map((s, i) => {
    assert.equal(s.status, 'rejected', `rank ${i} should have failed`);
    const e = (s as PromiseRejectedResult).reason;
    assert.ok(e instanceof CommError, String(e));
    return e;
  });
}

test('a rank calling another collective fails every rank, naming both', async () => {
  const groups = createMemoryGroups(4);
  const errors = await rejections(groups.map((g) => (g.rank === 2 ? g.broadcast(new Float32Array(8), 0) : g.allReduce(new Float32Array(8)))));
  for (const e of errors)
    assert.match(
      e.message,
      /#1 allReduce\(sum, float32\[8\]\).*#1 broadcast\(root 0, float32\[8\]\)|#1 broadcast\(root 0, float32\[8\]\).*#1 allReduce\(sum, float32\[8\]\)/,
    );
  // The group stays broken: the next call fails at once with the same error.
  await assert.rejects(groups[0].barrier(), (e: unknown) => e === errors[0]);
});

test('different lengths are a mismatch too', async () => {
  const groups = createMemoryGroups(2);
  const errors = await rejections(groups.map((g) => g.allReduce(new Float32Array(10 + g.rank))));
  for (const e of errors) assert.match(e.message, /float32\[10\].*float32\[11\]|float32\[11\].*float32\[10\]/);
});

test('a rank that never calls: the others time out naming the op, sequence number and that rank', async () => {
  const groups = createMemoryGroups(4, { collectiveTimeoutMs: 200 });
  await Promise.all(groups.map((g) => g.barrier()));
  const errors = await rejections(groups.filter((g) => g.rank !== 3).map((g) => g.allReduce(new Float32Array(100))));
  for (const e of errors) {
    assert.match(e.message, /#2 allReduce\(sum, float32\[100\]\) on rank \d timed out after 0\.2 s/);
    assert.match(e.message, /did not take part: 3 \(has not called it; its latest collective is #1 barrier\(\), finished\)/);
  }
  // Rank 3 learnt of the failure from the others: its next call fails with their message.
  await assert.rejects(groups[3].allReduce(new Float32Array(100)), /reported by rank \d.*|timed out/);
});

test('a rank that does not answer is named as such', async () => {
  const groups = createMemoryGroups(3, { collectiveTimeoutMs: 150, unresponsive: [1] });
  const errors = await rejections([groups[0].barrier(), groups[2].barrier()]);
  for (const e of errors) assert.match(e.message, /#1 barrier\(\) on rank \d timed out .* did not take part: 1 \(no answer/);
});

test('a lost connection fails the collective only if a rank cannot take part any more', async () => {
  const groups = createMemoryGroups(3, { collectiveTimeoutMs: 60_000 });
  // Everyone is in it: a suspicion changes nothing.
  const all = groups.map((g) => g.allReduce(new Float32Array(10).fill(1)));
  await groups[0].suspect('a test');
  await Promise.all(all);
  // Rank 2 closes instead of calling: the others fail soon, long before the timeout.
  const pending = [groups[0].allReduce(new Float32Array(10)), groups[1].allReduce(new Float32Array(10))];
  await groups[2].close();
  await groups[1].suspect('its connection to rank 2 closed');
  const errors = await rejections(pending);
  for (const e of errors)
    assert.match(
      e.message,
      /#2 allReduce\(sum, float32\[10\]\) on rank 1 stalled after its connection to rank 2 closed; ranks that did not take part: 2 \(closed its process group after #1 allReduce/,
    );
});

test('close rejects a pending collective and is idempotent; bad arguments fail clearly', async () => {
  const groups = createMemoryGroups(2);
  await assert.rejects(groups[0].allReduce(new Int32Array(3) as unknown as Float32Array), /needs a Float32Array or Float64Array, got Int32Array/);
  await assert.rejects(groups[0].broadcast(new Float32Array(3), 2), /root 2 is not a rank of a world of 2/);
  await assert.rejects(groups[0].allReduce(new Float32Array(3), 'prod' as ReduceOp), /op must be/);
  const pending = groups[0].allReduce(new Float32Array(3));
  await assert.rejects(groups[0].barrier(), /still running/);
  await groups[0].close();
  await groups[0].close();
  await assert.rejects(pending, /closed/);
  await assert.rejects(groups[0].barrier(), /closed/);
});

test('allReduce with a window: each piece of a buffer, reduced alone, gets the bits of the whole buffer’s all-reduce (ring and gather, float32 and bf16 wire)', async () => {
  for (const worldSize of [2, 3, 4, 5]) {
    for (const compression of [undefined, { format: 'bf16' as const, exactTail: 1 }]) {
      // 5000 floats over a 4 KiB gather limit: the whole buffer takes the ring; pieces of every
      // size, one inside a chunk, some across chunk boundaries, an empty one.
      for (const gatherBytes of [4096, 1 << 20]) {
        const count = 5000;
        const cuts = [0, 1, 700, 2400, 2401, 4999, 5000];
        const inputs = Array.from({ length: worldSize }, (_, r) => Float32Array.from(random(count, 31 * r + worldSize)));
        const groups = createMemoryGroups(worldSize, { collectiveTimeoutMs: 5000, gatherBytes, segmentBytes: 1024 });
        try {
          const whole = inputs.map((a) => a.slice());
          await Promise.all(groups.map((g, r) => g.allReduce(whole[r] as Float32Array, 'sum', compression)));
          const pieces = inputs.map((a) => a.slice());
          await Promise.all(
            groups.map(async (g, r) => {
              const buf = pieces[r] as Float32Array;
              // From the end, as gradient buckets go; the loss (exact tail) only in the last piece.
              for (let k = cuts.length - 1; k > 0; k--) {
                const [lo, hi] = [cuts[k - 1] as number, cuts[k] as number];
                const wire = compression === undefined ? undefined : { ...compression, exactTail: hi === count ? 1 : 0 };
                await g.allReduce(buf.subarray(lo, hi), 'sum', wire, { offset: lo, total: count });
              }
            }),
          );
          for (let r = 0; r < worldSize; r++) {
            assert.deepEqual(
              Buffer.from((pieces[r] as Float32Array).buffer),
              Buffer.from((whole[r] as Float32Array).buffer),
              `N ${worldSize} ${compression?.format ?? 'f32'} gather ≤ ${gatherBytes}: rank ${r}`,
            );
          }
        } finally {
          await Promise.all(groups.map((g) => g.close()));
        }
      }
    }
  }
  const [g] = createMemoryGroups(1);
  await assert.rejects(
    g!.allReduce(new Float32Array(4), 'sum', undefined, { offset: 3, total: 6 }),
    /window: elements \[3, 3 \+ 4\) do not lie in a buffer of 6/,
  );
  await g!.close();
});
