import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createMemoryGroups } from '../../../worker/comm/memory_group.js';
import { COLLECTIVE_HISTORY } from '../../../worker/comm/ring_group.js';

test('a group remembers its latest collectives (op, seq, bytes, state), the timed-out one as failed', async () => {
  const groups = createMemoryGroups(2, { collectiveTimeoutMs: 200, unresponsive: [1] });
  for (let i = 0; i < COLLECTIVE_HISTORY + 2; i++) await Promise.all(groups.map((g) => g.allReduce(new Float32Array(3))));
  await Promise.all(groups.map((g) => g.broadcast(new Uint8Array(5), 0)));
  // Rank 1 does not call the next one: rank 0 times out.
  await assert.rejects(groups[0].allReduce(new Float64Array(2), 'max'), /timed out/);
  const h = groups[0].recentCollectives();
  assert.equal(h.length, COLLECTIVE_HISTORY);
  const total = COLLECTIVE_HISTORY + 4; // H + 2 all-reduces, a broadcast, the failed all-reduce
  assert.deepEqual(
    h.map((c) => c.seq),
    Array.from({ length: COLLECTIVE_HISTORY }, (_, i) => total - COLLECTIVE_HISTORY + 1 + i),
  );
  assert.deepEqual(h.at(-2), { seq: COLLECTIVE_HISTORY + 3, op: 'broadcast(root 0, uint8[5])', bytes: 5, state: 'done' });
  assert.deepEqual(h.at(-1), { seq: COLLECTIVE_HISTORY + 4, op: 'allReduce(max, float64[2])', bytes: 16, state: 'failed' });
  assert.ok(h.slice(0, -1).every((c) => c.state === 'done'));
  assert.equal(groups[1].recentCollectives().at(-1)?.state, 'done', 'rank 1 never started the last one');
  await Promise.all(groups.map((g) => g.close()));
});
