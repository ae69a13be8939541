/**
 * One train_ddp run of real worker processes in a folder of its own, and what it left there: each
 * rank's exit, rank 0's log and metrics, the checkpoint path. The multi-process tests of
 * compression, ZeRO and faults compare such runs with each other.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseMetrics, type MetricsRecord } from '../../shared/metrics.js';
import { decodeSafetensors } from '../../worker/safetensors.js';
import { freePort, spawnWorkers, type WorkerExit } from './workers.js';

export interface TrainRun {
  readonly exits: WorkerExit[];
  /** Rank 0's metrics records ([] when it wrote none). */
  readonly metrics: MetricsRecord[];
  /** Rank 0's log ('' when it wrote none). */
  readonly log: string;
  /** The run's --checkpoint-path (it may not exist). */
  readonly checkpoint: string;
}

export interface TrainRunOptions {
  /** A checkpoint copied to the run's checkpoint path first (for --resume). */
  readonly from?: string;
  readonly env?: Record<string, string>;
  /** Assert that every rank exited 0 (default true); false: the caller checks the exits. */
  readonly ok?: boolean;
  /** Pretend hosts the ranks are split into (test/helpers/workers.ts); default 1. */
  readonly nodes?: number;
}

/**
 * train_ddp with `worldSize` workers and `args` (the model's flags among them), logging to
 * `dir`/train.log and checkpointing to `dir`/ckpt.safetensors unless `args` say otherwise.
 */
export async function trainDdpIn(dir: string, worldSize: number, args: readonly string[], opts: TrainRunOptions = {}): Promise<TrainRun> {
  mkdirSync(dir, { recursive: true });
  const checkpoint = join(dir, 'ckpt.safetensors');
  if (opts.from !== undefined) copyFileSync(opts.from, checkpoint);
  const group = await spawnWorkers('worker/train_ddp.ts', worldSize, ['--log-file', join(dir, 'train.log'), '--checkpoint-path', checkpoint, ...args], {
    masterPort: await freePort(),
    env: opts.env,
    nodes: opts.nodes,
  });
  const exits = await group.exited;
  if (opts.ok !== false) for (const e of exits) assert.equal(e.code, 0, `rank ${e.rank} in ${dir} exited ${e.code} ${e.signal}: ${e.stderr}`);
  const read = (f: string): string => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), 'utf8') : '');
  return { exits, metrics: parseMetrics(read('train.metrics.jsonl')), log: read('train.log'), checkpoint };
}

/**
 * The NaN drill on 2 workers, with `args` (the model's flags and the mode under test: --zero 1,
 * --overlap, ...), in `dir`/nan-stop and `dir`/nan-skip: rank 1's gradient is poisoned at step 3
 * (ROSEDIST_TEST_INJECT_NAN). Under --on-nonfinite stop every rank exits 1 naming the step and
 * the rank, and only steps 1 and 2 were recorded; under skip the step is skipped once, every
 * metric is finite and the checkpoint's optimizer took 3 of the 4 steps.
 */
export async function checkNanStopAndSkip(dir: string, args: readonly string[]): Promise<void> {
  const env = { ROSEDIST_TEST_INJECT_NAN: '3:1' };
  const stop = await trainDdpIn(join(dir, 'nan-stop'), 2, [...args, '--num-steps', '4', '--eval-interval', '1'], { env, ok: false });
  for (const e of stop.exits) {
    assert.equal(e.code, 1, `rank ${e.rank}: ${e.stderr}`);
    assert.match(e.stderr, /non-finite loss or gradient at step 3: rank 1's gradient is NaN at index 0/);
  }
  assert.deepEqual(
    stop.metrics.map((m) => m.step),
    [1, 2],
  );
  const skipArgs = [...args, '--num-steps', '4', '--eval-interval', '2', '--checkpoint-interval', '4', '--on-nonfinite', 'skip'];
  const skip = await trainDdpIn(join(dir, 'nan-skip'), 2, skipArgs, { env });
  assert.equal(skip.log.split('\n').filter((l) => /at step 3: rank 1's gradient is NaN at index 0; skipped/.test(l)).length, 1, skip.log);
  assert.ok(
    skip.metrics.every((m) => Number.isFinite(m.train_loss) && Number.isFinite(m.val_loss)),
    JSON.stringify(skip.metrics),
  );
  const meta = decodeSafetensors(readFileSync(skip.checkpoint), skip.checkpoint).metadata;
  assert.equal((JSON.parse(meta.optimizer ?? '{}') as { stepCount: number }).stepCount, 3);
}
