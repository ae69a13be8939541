/**
 * The loop's collectives over N ranks of an in-memory ring in this process
 * (worker/comm/memory_group.ts); the same over real processes is in test/integration/.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CommError, ConfigError, FileError, RosedistError } from '../../shared/errors.js';
import { onRanks, settle } from '../helpers/memory_ranks.js';
import { averageGradients, averageGradientShards, rootDecides, syncParams } from '../../worker/ddp.js';
import { GradBuffer } from '../../worker/grad_buffer.js';
import { shardRange } from '../../worker/comm/chunks.js';

describe('ddp collectives', () => {
  it("syncParams gives every rank rank 0's parameters", async () => {
    const out = await onRanks(3, async (pg) => {
      const params = Float32Array.from({ length: 1000 }, (_, i) => i * 0.5 + pg.rank);
      await syncParams(pg, params);
      return params;
    });
    const expected = Float32Array.from({ length: 1000 }, (_, i) => i * 0.5);
    for (const p of out) assert.deepEqual(p, expected);
  });

  it('averageGradients averages gradients and the loss slot over ranks', async () => {
    const out = await onRanks(3, async (pg) => {
      const buf = Float32Array.from([pg.rank, 2 * pg.rank, 10 + pg.rank]); // 2 gradients, then the loss
      await averageGradients(pg, new GradBuffer(buf));
      return [...buf];
    });
    for (const b of out)
      assert.deepEqual(
        b.map((v) => Math.round(v * 1e5) / 1e5),
        [1, 2, 11],
      );
  });

  it('averageGradients tells each rank where its own buffer was not finite, before the sum spread it', async () => {
    const own = [
      [1, 2, 3],
      [1, Number.NEGATIVE_INFINITY, Number.NaN],
      [1, 2, Number.NaN],
    ];
    const out = await onRanks(3, async (pg) => {
      const buf = Float32Array.from(own[pg.rank] as number[]);
      const finding = await averageGradients(pg, new GradBuffer(buf));
      return { finding, sumIsBad: !Number.isFinite(buf[1]) && Number.isNaN(buf[2]) };
    });
    assert.deepEqual(
      out.map((o) => o.finding),
      [undefined, { rank: 1, what: 'gradient', index: 1, value: '-Infinity' }, { rank: 2, what: 'loss', index: -1, value: 'NaN' }],
    );
    for (const o of out) assert.ok(o.sumIsBad);
  });

  it('rootDecides hands rank 0 result to every rank', async () => {
    const out = await onRanks(2, (pg) => rootDecides(pg, () => ({ step: 5, rank: pg.rank })));
    assert.deepEqual(out, [
      { step: 5, rank: 0 },
      { step: 5, rank: 0 },
    ]);
  });

  it('rootDecides makes every rank fail with rank 0 error, class and hint kept', async () => {
    for (const [Cls, name] of [
      [FileError, 'FileError'],
      [ConfigError, 'ConfigError'],
      [CommError, 'CommError'],
    ] as const) {
      const original = new Cls('checkpoint x is damaged', 'delete it');
      const out = await settle(3, (pg) =>
        rootDecides(pg, () => {
          throw original;
        }),
      );
      assert.equal(out[0].status === 'rejected' && out[0].reason, original);
      for (const r of out.slice(1)) {
        assert.equal(r.status, 'rejected');
        const e = (r as PromiseRejectedResult).reason as RosedistError;
        assert.equal(e.name, name);
        assert.equal(e.message, 'rank 0: checkpoint x is damaged');
        assert.equal(e.hint, 'delete it');
      }
    }
    const plain = await settle(2, (pg) =>
      rootDecides(pg, () => {
        throw new TypeError('boom');
      }),
    );
    assert.ok((plain[1] as PromiseRejectedResult).reason instanceof RosedistError);
  });
});
