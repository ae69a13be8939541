/**
 * The training loop in this process (a world of one, cpu backend, a tiny model): reproducibility,
 * resume, gradient accumulation. Multi-process runs are in test/integration/.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { readWorkerEnv } from '../../shared/env.js';
import { FileError } from '../../shared/errors.js';
import { closeLogger, createLogger } from '../../shared/logging.js';
import { parseMetrics, type MetricsRecord } from '../../shared/metrics.js';
import { SingleProcessGroup } from '../../worker/comm/process_group.js';
import { PHASES, type MergedTrace } from '../../worker/observe/profiler.js';
import { decodeSafetensors } from '../../worker/safetensors.js';
import { parseTrainConfig } from '../../worker/config.js';
import { tf } from '../../worker/tf.js';
import { train } from '../../worker/trainer.js';
import { tinyGpt } from '../helpers/tiny_gpt.js';

const dir = mkdtempSync(join(tmpdir(), 'rosedist-trainer-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const TINY = tinyGpt({ 'batch-size': 4, dataset: 'toy:60', 'eval-interval': 2, 'checkpoint-interval': 2, lr: '3e-3' });

/** Train in this process; `name` picks the log and checkpoint files (shared by runs of one name). */
async function run(name: string, args: string[]): Promise<{ log: string; metrics: MetricsRecord[]; checkpoint: string }> {
  const logFile = join(dir, `${name}.log`);
  const checkpoint = join(dir, `${name}.safetensors`);
  const cfg = parseTrainConfig([...TINY, '--log-file', logFile, '--checkpoint-path', checkpoint, ...args], 'train_minimal');
  const logger = createLogger({ rank: 0, file: logFile, silentConsole: true });
  const result = await train({ cfg, env: readWorkerEnv({}), pg: new SingleProcessGroup(), logger });
  await closeLogger(logger);
  const metrics = parseMetrics(readFileSync(cfg.metricsFile, 'utf8'));
  assert.deepEqual(result.metrics, metrics.slice(metrics.length - result.metrics.length));
  return { log: readFileSync(logFile, 'utf8'), metrics: result.metrics as MetricsRecord[], checkpoint };
}

/** A record without the figures that depend on the clock or the run. */
const figures = ({ elapsed_s: _e, run_id: _r, ...rest }: MetricsRecord) => rest;
const weights = (path: string) => decodeSafetensors(readFileSync(path), path).tensors;

describe('train (world of one)', () => {
  it('the same seed gives identical metrics; another seed does not', async () => {
    const a = await run('seed-a', ['--seed', '1', '--num-steps', '4']);
    const b = await run('seed-b', ['--seed', '1', '--num-steps', '4']);
    const c = await run('seed-c', ['--seed', '2', '--num-steps', '4']);
    assert.deepEqual(
      a.metrics.map((r) => r.step),
      [2, 4],
    );
    assert.deepEqual(a.metrics.map(figures), b.metrics.map(figures));
    assert.notDeepEqual(a.metrics.map(figures), c.metrics.map(figures));
    for (const r of a.metrics) {
      assert.equal(r.val_ppl, Math.exp(r.val_loss));
      assert.equal(r.val_tokens, 12 * 7); // toy:60 → 12 validation samples of 7 predictions
      assert.equal(r.tokens_seen, r.step * 4 * 8);
    }
    assert.deepEqual(weights(a.checkpoint), weights(b.checkpoint));
  });

  it('a resumed run matches an uninterrupted one', async () => {
    const first = await run('resume', ['--num-steps', '5']);
    assert.deepEqual(
      first.metrics.map((r) => r.step),
      [2, 4, 5],
    );
    const resumed = await run('resume', ['--resume', '--num-steps', '8']);
    const straight = await run('straight', ['--num-steps', '8']);
    assert.match(resumed.log, /resumed from .*resume\.safetensors at step 5/);
    assert.deepEqual(
      resumed.metrics.map((r) => r.step),
      [6, 8],
    );
    assert.deepEqual(resumed.metrics.map(figures), straight.metrics.filter((r) => r.step > 5).map(figures));
    assert.deepEqual(weights(resumed.checkpoint), weights(straight.checkpoint));
  });

  it('--resume without a checkpoint starts from scratch, and one at --num-steps only evaluates', async () => {
    const fresh = await run('nockpt', ['--resume', '--num-steps', '2']);
    assert.match(fresh.log, /no checkpoint at .*nockpt\.safetensors, starting from scratch/);
    assert.deepEqual(
      fresh.metrics.map((r) => r.step),
      [2],
    );
    const again = await run('nockpt', ['--resume', '--num-steps', '2']);
    assert.match(again.log, /nothing left to train, evaluating only/);
    assert.deepEqual(again.metrics.map(figures), fresh.metrics.map(figures));
  });

  it('gradient accumulation over 2 micro-batches of 2 equals one batch of 4 (dropout 0)', async () => {
    const whole = await run('accum-1', ['--dropout', '0', '--num-steps', '3']);
    const split = await run('accum-2', ['--dropout', '0', '--num-steps', '3', '--batch-size', '2', '--grad-accum-steps', '2']);
    const a = weights(whole.checkpoint);
    const b = weights(split.checkpoint);
    let maxDiff = 0;
    a.forEach((t, i) => t.data.forEach((v, j) => (maxDiff = Math.max(maxDiff, Math.abs(v - b[i].data[j])))));
    assert.ok(maxDiff < 1e-5, `max abs difference ${maxDiff}`);
    // The logged loss of a step is the mean over its micro-batches: the whole batch's mean loss.
    assert.ok(Math.abs(whole.metrics[0].train_loss - split.metrics[0].train_loss) < 1e-5);
    assert.equal(split.metrics.at(-1)?.tokens_seen, 3 * 4 * 8);
  });

  it('writes the log header once per run', async () => {
    const { log } = await run('header', ['--num-steps', '2']);
    assert.match(log, /train_minimal started \d{4}-\d\d-\d\dT.*: world size 1/);
    assert.match(log, /rank 0: backend cpu, device CPU/);
    assert.match(log, /dataset: toy: 60 samples of 8 random tokens in \[0, 64\)/);
    assert.match(log, /model: GPT, [\d,]+ parameters \(1 layers, 2 heads, d_model 16/);
    assert.match(log, /arguments: \{"program":"train_minimal","vocabSize":64,/);
    assert.match(log, /amp: false — tfjs has no float16 training; running float32/);
    assert.match(log, /step 2\/2 \| train loss \d+\.\d{6} \| val loss \d+\.\d{6} \| val ppl \d+\.\d{3} \| amp: false/);
    // Every tensor of the run was disposed.
    assert.equal(tf.memory().numTensors, 0);
  });

  it('without a TTY, progress is plain lines in the log, every step of a short run, never a redraw', async () => {
    // node --test runs this file with piped stdio: process.stderr is not a TTY here.
    assert.notEqual(process.stderr.isTTY, true);
    const { log } = await run('progress', ['--num-steps', '4', '--eval-interval', '2']);
    const lines = log.split('\n').filter((l) => / \d+ tok\/s \| ETA /.test(l));
    assert.deepEqual(
      lines.map((l) => /step (\d+)\/4 \(\d+%\)/.exec(l)?.[1]),
      ['1', '2', '3', '4'],
    );
    // The val ppl of the step-2 evaluation is shown from step 2 on.
    assert.match(lines[0], /val ppl -$/);
    const ppl2 = /step 2\/4 \| .* val ppl (\d+\.\d+) \| amp/.exec(log)?.[1];
    assert.ok(ppl2 !== undefined);
    assert.match(lines[2], new RegExp(`val ppl ${Number(ppl2).toFixed(2).replace('.', '\\.')}$`));
    assert.ok(!log.includes('\r') && !log.includes('\x1b'), 'no carriage returns or escape sequences in the log');
  });

  it('--profile (world of one, 2 micro-batches): every phase, per step, in order, never overlapping', async () => {
    const trace = join(dir, 'prof', 'trace.json');
    await run('prof', [
      '--num-steps',
      '3',
      '--eval-interval',
      '2',
      '--checkpoint-interval',
      '3',
      '--batch-size',
      '2',
      '--grad-accum-steps',
      '2',
      '--profile',
      trace,
    ]);
    const { traceEvents } = JSON.parse(readFileSync(trace, 'utf8')) as MergedTrace;
    const complete = traceEvents.filter((e) => e.ph === 'X');
    assert.ok(complete.every((e) => e.pid === 0 && e.tid === 0));
    const perStep = (step: number) => complete.filter((e) => e.args?.step === step).map((e) => e.name);
    const micro = ['data', 'forward_backward', 'grad_copy'];
    assert.deepEqual(perStep(1), [...micro, ...micro, 'allreduce', 'optimizer']);
    assert.deepEqual(perStep(2), [...micro, ...micro, 'allreduce', 'optimizer', 'eval']);
    assert.deepEqual(perStep(3), [...micro, ...micro, 'allreduce', 'optimizer', 'eval', 'checkpoint']);
    assert.deepEqual([...new Set(complete.map((e) => e.name))].sort(), [...PHASES].sort());
    // Sequential: each event starts once the previous one ended (ts rounded to 1 µs).
    for (let i = 1; i < complete.length; i++) assert.ok(complete[i].ts >= complete[i - 1].ts + (complete[i - 1].dur ?? 0) - 1);
  });

  it('--profile to an unwritable path fails before training, with a FileError', async () => {
    const blocker = join(dir, 'not-a-dir');
    writeFileSync(blocker, 'x');
    const logFile = join(dir, 'badprof.log');
    const cfg = parseTrainConfig([...TINY, '--num-steps', '2', '--log-file', logFile, '--profile', join(blocker, 'trace.json')], 'train_minimal');
    const logger = createLogger({ rank: 0, file: logFile, silentConsole: true });
    await assert.rejects(
      train({ cfg, env: readWorkerEnv({}), pg: new SingleProcessGroup(), logger }),
      (e: unknown) =>
        e instanceof FileError &&
        /cannot write the trace .*not-a-dir\/trace\.json/.test(e.message) &&
        e.hint === 'pass --profile a path in a writable directory',
    );
    await closeLogger(logger);
    assert.equal(existsSync(cfg.metricsFile), false, 'no step was trained');
  });
});
