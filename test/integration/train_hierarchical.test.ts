/**
 * train_ddp with the hierarchical all-reduce (worker/comm/hierarchical.ts) over real worker
 * processes on 2 pretend hosts × 2 workers (test/helpers/workers.ts `nodes`: tcp:// between the
 * hosts, ipc:// within; no launcher). Tiny model, cpu backend. The hierarchical run must learn
 * what the flat one learns: val loss equal within 1e-5 (a different summation order changes the
 * last bits of the gradients, nothing more), with every replica identical; and bad values of
 * --allreduce-topology stop every rank with one line.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { tinyGpt } from '../helpers/tiny_gpt.js';
import { trainDdpIn, type TrainRun } from '../helpers/train_run.js';

const TINY = tinyGpt({
  'batch-size': 2,
  dataset: 'toy:60',
  'collective-timeout': 60,
  lr: '3e-3',
  seed: 5,
  'num-steps': 8,
  'eval-interval': 4,
  'checkpoint-interval': 8,
});

const root = mkdtempSync(join(tmpdir(), 'rosedist-hier-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** train_ddp with `worldSize` workers on `nodes` pretend hosts in root/`name`. */
const trainDdp = (name: string, worldSize: number, nodes: number, args: string[], ok = true): Promise<TrainRun> =>
  trainDdpIn(join(root, name), worldSize, [...TINY, ...args], { ok, nodes });

describe('train_ddp, 2 hosts × 2 workers: hierarchical against flat', () => {
  it('the same val loss within 1e-5 at every evaluation; every replica identical; the log names the topology', async () => {
    const flat = await trainDdp('flat', 4, 2, ['--allreduce-topology', 'flat']);
    const hier = await trainDdp('hier', 4, 2, []);
    assert.match(flat.log, /all-reduce: flat ring \(2 hosts × 2 workers; --allreduce-topology flat\)/);
    assert.match(hier.log, /all-reduce: hierarchical \(2 hosts × 2 workers; auto\): reduce-scatter within each host/);
    assert.deepEqual(
      hier.metrics.map((m) => m.step),
      [4, 8],
    );
    assert.deepEqual(
      flat.metrics.map((m) => m.step),
      [4, 8],
    );
    hier.metrics.forEach((m, i) => {
      const f = flat.metrics[i];
      assert.ok(Math.abs(m.val_loss - f.val_loss) <= 1e-5, `step ${m.step}: val loss ${m.val_loss} hierarchical, ${f.val_loss} flat`);
      assert.ok(Math.abs(m.train_loss - f.train_loss) <= 1e-5, `step ${m.step}: train loss ${m.train_loss} hierarchical, ${f.train_loss} flat`);
    });
    // Training moved the weights (val loss changed), and every replica ended with the same bits.
    assert.notEqual(hier.metrics[0].val_loss, hier.metrics[1].val_loss);
    for (const r of [flat, hier]) assert.match(r.log, /replicas identical after step 8/);
  });

  it('--zero 1 runs flat under auto', async () => {
    const z = await trainDdp('zero', 4, 2, ['--zero', '1', '--num-steps', '2', '--eval-interval', '2', '--checkpoint-interval', '2']);
    assert.match(z.log, /all-reduce: flat ring \(2 hosts × 2 workers; auto; --zero 1 runs on the flat ring\)/);
  });

  it('a bad value, and hierarchical on one host, stop every rank with one line (exit 2)', async () => {
    const bad = await trainDdp('bad', 2, 1, ['--allreduce-topology', 'ring'], false);
    for (const e of bad.exits) {
      assert.equal(e.code, 2, e.stderr);
      assert.match(e.stderr, /--allreduce-topology ring is not one of auto, flat, hierarchical \(pass --allreduce-topology auto\)/);
      assert.doesNotMatch(e.stderr, /\n\s+at /);
    }
    const one = await trainDdp('one-host', 2, 1, ['--allreduce-topology', 'hierarchical'], false);
    for (const e of one.exits) {
      assert.equal(e.code, 2, e.stderr);
      assert.match(
        e.stderr,
        /--allreduce-topology hierarchical needs several hosts with the same number \(more than 1\) of workers each; this run has 1 host with 2 workers/,
      );
      assert.doesNotMatch(e.stderr, /\n\s+at /);
    }
  });
});
