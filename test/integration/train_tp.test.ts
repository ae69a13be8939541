/**
 * Tensor parallelism over real worker processes and ZeroMQ subgroups on loopback (no launcher):
 * with dropout 0 and the same seed, tp 2 on 2 workers, tp 2 × dp 2 on 4 and tp 4 on 4 give the
 * per-step train loss and final weights of 1 worker at the same global batch; checkpoints (whole
 * weights) move between tp, dense and dp runs. Tiny model, cpu backend.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parseMetrics, type MetricsRecord } from '../../shared/metrics.js';
import { decodeSafetensors, type NamedTensor } from '../../worker/safetensors.js';
import { freePort, spawnWorkers } from '../helpers/workers.js';
import { tinyGpt } from '../helpers/tiny_gpt.js';

const TINY = tinyGpt({ 'n-layers': 2, 'n-heads': 4, 'collective-timeout': 60, dataset: 'toy:80', dropout: 0, seed: 3, lr: '3e-3', 'eval-interval': 1 });

const root = mkdtempSync(join(tmpdir(), 'rosedist-tp-'));
after(() => rmSync(root, { recursive: true, force: true }));

interface Run {
  readonly metrics: MetricsRecord[];
  readonly log: string;
  readonly checkpoint: string;
}

/** train_ddp with `worldSize` workers; `checkpoint`: a file to resume from (copied in first). */
async function train(name: string, worldSize: number, args: string[], resumeFrom?: string, env?: Record<string, string>): Promise<Run> {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  const checkpoint = join(dir, 'ckpt.safetensors');
  if (resumeFrom !== undefined) copyFileSync(resumeFrom, checkpoint);
  const group = await spawnWorkers(
    'worker/train_ddp.ts',
    worldSize,
    [...TINY, '--log-file', join(dir, 'train.log'), '--checkpoint-path', checkpoint, ...(resumeFrom ? ['--resume'] : []), ...args],
    {
      masterPort: await freePort(),
      timeoutMs: 240_000,
      env,
    },
  );
  const exits = await group.exited;
  for (const e of exits) assert.equal(e.code, 0, `rank ${e.rank} of ${name} exited ${e.code} ${e.signal}: ${e.stderr}`);
  return { metrics: parseMetrics(readFileSync(join(dir, 'train.metrics.jsonl'), 'utf8')), log: readFileSync(join(dir, 'train.log'), 'utf8'), checkpoint };
}

const params = (path: string): readonly NamedTensor[] => decodeSafetensors(readFileSync(path), path).tensors.filter((t) => !t.name.startsWith('optimizer.'));

function maxAbsDiff(a: readonly NamedTensor[], b: readonly NamedTensor[]): number {
  assert.deepEqual(
    a.map((t) => [t.name, t.shape]),
    b.map((t) => [t.name, t.shape]),
  );
  let max = 0;
  a.forEach((t, i) => t.data.forEach((v, j) => (max = Math.max(max, Math.abs(v - b[i].data[j])))));
  return max;
}

/** Per-step train losses and final weights of `run` within 1e-5 of `ref`'s. */
function assertSameTraining(run: Run, ref: Run, what: string, diag: (s: string) => void): void {
  const losses = (r: Run) => r.metrics.map((m) => [m.step, m.train_loss] as const);
  assert.deepEqual(
    losses(run).map(([s]) => s),
    losses(ref).map(([s]) => s),
    `${what}: steps`,
  );
  const lossDiff = Math.max(...losses(run).map(([, l], i) => Math.abs(l - losses(ref)[i][1])));
  const weightDiff = maxAbsDiff(params(run.checkpoint), params(ref.checkpoint));
  diag(`${what}: max train-loss difference ${lossDiff.toExponential(2)}, max weight difference ${weightDiff.toExponential(2)}`);
  assert.ok(lossDiff < 1e-5, `${what}: train loss differs by ${lossDiff}`);
  assert.ok(weightDiff < 1e-5, `${what}: weights differ by ${weightDiff}`);
}

describe('train_ddp --tensor-parallel-size (real processes)', () => {
  let dense: Run;
  it('tp 2 on 2 workers: the per-step loss and final weights of 1 worker (dropout 0, 10 steps, same global batch)', async (t) => {
    dense = await train('dense', 1, ['--batch-size', '4', '--num-steps', '10']);
    const tp2 = await train('tp2', 2, ['--batch-size', '4', '--num-steps', '10', '--tensor-parallel-size', '2']);
    assertSameTraining(tp2, dense, 'tp 2', (s) => t.diagnostic(s));
    assert.match(tp2.log, /mesh: dp 1 × tp 2; TP groups \[0,1\]; DP groups \[0\] \[1\]/);
    // The run moved the weights far beyond the tolerance.
    const init = await train('init', 1, ['--batch-size', '4', '--num-steps', '1', '--lr', '1e-12']);
    assert.ok(maxAbsDiff(params(dense.checkpoint), params(init.checkpoint)) > 1e-3);
  });

  it('tp 2 × dp 2 and tp 4 on 4 workers (--use-tensor-parallel): the same as 1 worker', async (t) => {
    const mixed = await train('tp2dp2', 4, ['--batch-size', '2', '--num-steps', '10', '--tensor-parallel-size', '2']);
    assertSameTraining(mixed, dense, 'tp 2 × dp 2', (s) => t.diagnostic(s));
    assert.match(mixed.log, /mesh: dp 2 × tp 2; TP groups \[0,1\] \[2,3\]; DP groups \[0,2\] \[1,3\]/);
    const tp4 = await train('tp4', 4, ['--batch-size', '4', '--num-steps', '10', '--use-tensor-parallel']);
    assertSameTraining(tp4, dense, 'tp 4', (s) => t.diagnostic(s));
  });

  it('checkpoints hold whole weights: tp 2 resumes as dense and as dp 2, dense and dp 2 resume as tp 2, all matching an uninterrupted run', async (t) => {
    const straight = await train('straight', 1, ['--batch-size', '4', '--num-steps', '6']);
    const tpHalf = await train('tp-half', 2, ['--batch-size', '4', '--num-steps', '3', '--tensor-parallel-size', '2']);
    const tpNames = params(tpHalf.checkpoint).map((p) => [p.name, p.shape]);
    assert.deepEqual(
      tpNames,
      params(straight.checkpoint).map((p) => [p.name, p.shape]),
      'a tp checkpoint has the dense names and whole shapes',
    );
    const denseHalf = await train('dense-half', 1, ['--batch-size', '4', '--num-steps', '3']);
    const dpHalf = await train('dp-half', 2, ['--batch-size', '2', '--num-steps', '3']);
    const cases: [string, Run][] = [
      ['tp 2 → dense', await train('tp-to-dense', 1, ['--batch-size', '4', '--num-steps', '6'], tpHalf.checkpoint)],
      ['tp 2 → dp 2', await train('tp-to-dp', 2, ['--batch-size', '2', '--num-steps', '6'], tpHalf.checkpoint)],
      ['dense → tp 2', await train('dense-to-tp', 2, ['--batch-size', '4', '--num-steps', '6', '--tensor-parallel-size', '2'], denseHalf.checkpoint)],
      ['dp 2 → tp 2', await train('dp-to-tp', 2, ['--batch-size', '4', '--num-steps', '6', '--tensor-parallel-size', '2'], dpHalf.checkpoint)],
    ];
    const tail = (r: Run): Run => ({ ...r, metrics: r.metrics.filter((m) => m.step > 3) });
    for (const [what, run] of cases) {
      assert.match(run.log, /resumed from .* at step 3/);
      assertSameTraining(tail(run), tail(straight), what, (s) => t.diagnostic(s));
    }
  });

  it("a NaN in one TP rank's gradient skips the step on every rank (--on-nonfinite skip), as a dense run skips it", async (t) => {
    const skip = ['--batch-size', '4', '--num-steps', '4', '--on-nonfinite', 'skip'];
    const nan = (rank: number) => ({ ROSEDIST_TEST_INJECT_NAN: `2:${rank}` });
    const denseSkip = await train('nan-dense', 1, skip, undefined, nan(0));
    const tpSkip = await train('nan-tp', 2, [...skip, '--tensor-parallel-size', '2'], undefined, nan(1));
    assert.match(tpSkip.log, /non-finite .* at step 2.*skipped this optimizer step/);
    assertSameTraining(tpSkip, denseSkip, 'tp 2 with a NaN on rank 1', (s) => t.diagnostic(s));
  });

  it('tp 2 trains with dropout (per-TP-rank masks inside the parallel regions): finite losses, not the dropout-0 ones', async () => {
    const run = await train('dropout', 2, ['--batch-size', '4', '--num-steps', '3', '--tensor-parallel-size', '2', '--dropout', '0.1']);
    assert.equal(run.metrics.length, 3);
    for (const [i, m] of run.metrics.entries()) {
      assert.ok(Number.isFinite(m.train_loss) && Number.isFinite(m.val_loss));
      assert.notEqual(m.train_loss, dense.metrics[i].train_loss);
    }
  });

  it('a tensor-parallel size that does not divide the world size or --n-heads is one clear line', async () => {
    const dir = join(root, 'bad');
    const group = await spawnWorkers(
      'worker/train_ddp.ts',
      2,
      [...TINY, '--log-file', join(dir, 'train.log'), '--tensor-parallel-size', '4', '--num-steps', '1'],
      { masterPort: await freePort(), timeoutMs: 60_000 },
    );
    const exits = await group.exited;
    assert.ok(exits.every((e) => e.code !== 0 && e.signal === null));
    assert.match(exits[0].stderr, /--tensor-parallel-size 4 does not divide the world size 2/);
    assert.doesNotMatch(exits[0].stderr, /\n\s+at /, 'no stack trace');
  });
});
