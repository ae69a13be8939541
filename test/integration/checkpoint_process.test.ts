/**
 * Checkpoints with real train_minimal processes (issue 13 #6, #11): a signal halfway through a
 * save (test hook ROSEDIST_TEST_SIGNAL_IN_SAVE), a SIGKILL's leftover temporary file removed by
 * the next run, and --resume with changed data settings.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { packagePath } from '../../shared/runtime.js';
import { readCheckpoint } from '../../worker/checkpoint.js';
import { gptConfigOf, parseTrainConfig } from '../../worker/config.js';
import { paramSpecs } from '../../worker/model/params.js';
import { launcherLines, startLauncher } from '../helpers/launcher_run.js';
import { spawnGroup, type WorkerExit } from '../helpers/workers.js';
import { tinyGpt } from '../helpers/tiny_gpt.js';

const TINY = tinyGpt({ 'batch-size': 4, dataset: 'toy:60' });

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function freshDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'rosedist-ckproc-'));
  dirs.push(d);
  return d;
}

async function trainMinimal(dir: string, args: string[], env: Record<string, string> = {}): Promise<WorkerExit> {
  const all = [...TINY, '--checkpoint-path', join(dir, 'ck.safetensors'), '--log-file', join(dir, 'run.log'), ...args];
  const [r] = await spawnGroup(packagePath('worker/train_minimal.ts'), 1, { args: all, env, timeoutMs: 120_000 });
  assert.ok(r);
  return r;
}

const temps = (dir: string): string[] => readdirSync(dir).filter((f) => f.includes('.tmp-'));
const log = (dir: string): string => readFileSync(join(dir, 'run.log'), 'utf8');

describe('a signal during a checkpoint save', () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} halfway through the write: the file is completed, then the process ends by ${signal}, no temporary file`, async () => {
      const dir = freshDir();
      const r = await trainMinimal(dir, ['--num-steps', '4', '--checkpoint-interval', '2'], { ROSEDIST_TEST_SIGNAL_IN_SAVE: signal });
      assert.equal(r.signal, signal, r.stderr);
      assert.deepEqual(temps(dir), []);
      // The first save (step 2) is complete and valid; the run went no further (no save at step 4).
      const path = join(dir, 'ck.safetensors');
      const cfg = parseTrainConfig([...TINY, '--checkpoint-path', path], 'train_minimal');
      assert.equal(readCheckpoint(path, paramSpecs(gptConfigOf(cfg)), cfg)?.step, 2);
    });
  }

  it('under the launcher with 2 ranks: rank 0 completes the save before SIGTERM ends it; --resume continues from that step', async () => {
    const dir = freshDir();
    const path = join(dir, 'ck.safetensors');
    const args = [...TINY, '--checkpoint-path', path, '--log-file', join(dir, 'run.log'), '--checkpoint-interval', '2'];
    const stopped = await startLauncher(['--nproc-per-node', '2', 'train_ddp', ...args, '--num-steps', '4'], { ROSEDIST_TEST_SIGNAL_IN_SAVE: 'SIGTERM' }).done;
    assert.equal(stopped.code, 1, stopped.stderr);
    assert.ok(
      launcherLines(stopped.stderr).some((l) => /rank 0 .* was killed by SIGTERM/.test(l)),
      stopped.stderr,
    );
    assert.deepEqual(temps(dir), []);
    const resumed = await startLauncher(['--nproc-per-node', '2', 'train_ddp', ...args, '--num-steps', '4', '--resume']).done;
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(log(dir), /resumed from .* at step 2/);
  });

  it('SIGKILL halfway leaves the temporary file; the next run removes it, as its process is gone', async () => {
    const dir = freshDir();
    const killed = await trainMinimal(dir, ['--num-steps', '2'], { ROSEDIST_TEST_SIGNAL_IN_SAVE: 'SIGKILL' });
    assert.equal(killed.signal, 'SIGKILL');
    const [left] = temps(dir);
    assert.match(left ?? '', /^ck\.safetensors\.tmp-\d+$/);
    assert.deepEqual(
      readdirSync(dir).filter((f) => f === 'ck.safetensors'),
      [],
    );
    const next = await trainMinimal(dir, ['--num-steps', '2', '--resume']);
    assert.equal(next.code, 0, next.stderr);
    assert.deepEqual(temps(dir), []);
    assert.match(log(dir), new RegExp(`WARN  removed .*${left}, the temporary file of a checkpoint save that was killed before it finished`));
    assert.match(log(dir), /no checkpoint at .*, starting from scratch/);
  });
});

describe('--resume with changed data settings', () => {
  it('a different --seq-len or --dataset is refused in one line naming both; a different --batch-size continues with a warning', async () => {
    const dir = freshDir();
    const first = await trainMinimal(dir, ['--num-steps', '2']);
    assert.equal(first.code, 0, first.stderr);

    const refused = await trainMinimal(dir, ['--num-steps', '4', '--resume', '--seq-len', '6', '--dataset', 'toy:50']);
    assert.equal(refused.code, 2, refused.stderr);
    const lines = refused.stderr.split('\n').filter((l) => l.trim() !== '');
    assert.equal(lines.length, 1, refused.stderr);
    assert.match(
      lines[0] as string,
      /checkpoint .*ck\.safetensors was written with other data settings: --dataset toy:60 there, toy:50 here; --seq-len 8 there, 6 here \(pass the checkpoint's data options/,
    );

    const warned = await trainMinimal(dir, ['--num-steps', '3', '--resume', '--batch-size', '2']);
    assert.equal(warned.code, 0, warned.stderr);
    assert.match(warned.stderr, /WARN: resuming checkpoint .* with --batch-size 4 there, 2 here: the data order continues at the same sample/);
    assert.match(log(dir), /resumed from .* at step 2/);
  });
});
