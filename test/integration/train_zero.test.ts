/**
 * --zero 1 (ZeRO stage 1, worker/zero.ts) over real worker processes and the ZeroMQ group on
 * loopback (test/helpers/workers.ts, no launcher). Tiny model, cpu backend.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { decodeSafetensors, type NamedTensor } from '../../worker/safetensors.js';
import { tinyGpt } from '../helpers/tiny_gpt.js';
import { checkNanStopAndSkip, trainDdpIn, type TrainRun, type TrainRunOptions } from '../helpers/train_run.js';

const TINY = tinyGpt({ 'batch-size': 2, dataset: 'toy:60', 'collective-timeout': 60, lr: '3e-3', seed: 5 });

const root = mkdtempSync(join(tmpdir(), 'rosedist-zero-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** train_ddp with `worldSize` workers in root/`name`; `from`: a checkpoint copied in first (for --resume). */
const trainDdp = (name: string, worldSize: number, args: string[], opts: TrainRunOptions = {}): Promise<TrainRun> =>
  trainDdpIn(join(root, name), worldSize, [...TINY, ...args], opts);

const tensors = (path: string): readonly NamedTensor[] => decodeSafetensors(readFileSync(path), path).tensors;

/** Largest difference over every tensor: the weights and AdamW's whole m and v. */
function maxAbsDiff(a: readonly NamedTensor[], b: readonly NamedTensor[]): number {
  assert.deepEqual(
    a.map((t) => [t.name, t.data.length]),
    b.map((t) => [t.name, t.data.length]),
  );
  let max = 0;
  a.forEach((t, i) => t.data.forEach((v, j) => (max = Math.max(max, Math.abs(v - b[i].data[j])))));
  return max;
}

function assertSameRun(a: TrainRun, b: TrainRun, what: string): void {
  const diff = maxAbsDiff(tensors(a.checkpoint), tensors(b.checkpoint));
  assert.ok(diff <= 1e-6, `${what}: max abs difference of weights and optimizer state ${diff}`);
  assert.equal(a.metrics.length, b.metrics.length);
  a.metrics.forEach((m, i) => {
    assert.equal(m.step, b.metrics[i].step);
    assert.ok(Math.abs(m.train_loss - b.metrics[i].train_loss) <= 1e-6, `${what} step ${m.step}: train loss ${m.train_loss} vs ${b.metrics[i].train_loss}`);
    assert.ok(Math.abs(m.val_loss - b.metrics[i].val_loss) <= 1e-6, `${what} step ${m.step}: val loss ${m.val_loss} vs ${b.metrics[i].val_loss}`);
  });
}

describe('train_ddp --zero 1 (real processes)', () => {
  it('equals the unsharded run after 10 steps; its checkpoint holds the whole state and resumes into another world size, with or without --zero', async (t) => {
    const ten = ['--num-steps', '10', '--eval-interval', '5', '--checkpoint-interval', '10'];
    const sharded = await trainDdp('zero-3', 3, [...ten, '--zero', '1']);
    const plain = await trainDdp('plain-3', 3, ten);
    assertSameRun(sharded, plain, '3 workers, --zero 1 vs unsharded');
    // The optimizer moved: m is far from zero, so comparing it means something.
    const m = tensors(sharded.checkpoint).find((x) => x.name === 'optimizer.m');
    assert.ok(m !== undefined && m.data.some((x) => Math.abs(x) > 1e-4));
    t.diagnostic(`10 steps, 3 workers: equal within 1e-6 (weights, m, v, losses)`);

    // The whole state resumes into 2 workers: sharded from the sharded checkpoint, unsharded
    // from the unsharded one, and unsharded from the sharded one; all three agree.
    const twelve = ['--num-steps', '12', '--eval-interval', '6', '--checkpoint-interval', '12', '--resume'];
    const zz = await trainDdp('resume-zero-zero', 2, [...twelve, '--zero', '1'], { from: sharded.checkpoint });
    const pp = await trainDdp('resume-plain-plain', 2, twelve, { from: plain.checkpoint });
    const zp = await trainDdp('resume-zero-plain', 2, twelve, { from: sharded.checkpoint });
    assert.match(zz.log, /written by world size 3, this run has world size 2/);
    assertSameRun(zz, pp, 'resumed into 2 workers, --zero 1 vs unsharded');
    assertSameRun(zp, pp, 'sharded checkpoint resumed unsharded');
  });

  it("a NaN in rank 1's gradient stops every rank naming it, also with --zero 1; skip mode skips the step on every rank", async () => {
    await checkNanStopAndSkip(root, [...TINY, '--zero', '1']);
  });

  it('--zero 2 is refused with one line saying what to pass', async () => {
    const r = await trainDdp('zero-bad', 2, ['--zero', '2'], { ok: false });
    for (const e of r.exits) {
      assert.equal(e.code, 2, `rank ${e.rank}: ${e.stderr}`);
      assert.match(e.stderr, /--zero 2 is not a ZeRO stage this trainer has.*--zero 1/);
    }
  });
});
