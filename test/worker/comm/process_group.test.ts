/**
 * The JSON collectives of worker/comm/process_group.ts over N ranks of an in-memory ring in this
 * process (worker/comm/memory_group.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { onRanks } from '../../helpers/memory_ranks.js';
import { allGatherJson, broadcastJson, SingleProcessGroup } from '../../../worker/comm/process_group.js';

describe('allGatherJson', () => {
  it('gives every rank every rank value, of different lengths, indexed by rank', async () => {
    const value = (rank: number) => ({ rank, device: 'x'.repeat(rank * 10), nested: [rank, { ok: rank % 2 === 0 }] });
    const out = await onRanks(3, (pg) => allGatherJson(pg, value(pg.rank)));
    for (const all of out) assert.deepEqual(all, [0, 1, 2].map(value));
  });

  it('cuts texts by bytes, not characters (multi-byte UTF-8), and sends undefined as null', async () => {
    const values = ['é'.repeat(5), 'plain', '🚀 ünïcode', undefined];
    const out = await onRanks(4, (pg) => allGatherJson(pg, values[pg.rank]));
    for (const all of out) assert.deepEqual(all, ['é'.repeat(5), 'plain', '🚀 ünïcode', null]);
  });

  it('in a world of one returns the value itself', async () => {
    const v = { a: [1, 2] };
    const [only, ...rest] = await allGatherJson(new SingleProcessGroup(), v);
    assert.equal(only, v);
    assert.deepEqual(rest, []);
  });

  it('runs in order with other collectives (broadcastJson after it sees the same group state)', async () => {
    const out = await onRanks(2, async (pg) => {
      const gathered = await allGatherJson(pg, `rank ${pg.rank}`);
      const root = await broadcastJson(pg, pg.rank === 1 ? { from: 1 } : undefined, 1);
      return { gathered, root };
    });
    for (const o of out) assert.deepEqual(o, { gathered: ['rank 0', 'rank 1'], root: { from: 1 } });
  });
});
