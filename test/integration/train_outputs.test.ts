/**
 * The files a run writes, over real worker processes (test/helpers/workers.ts): output paths that
 * can never be written fail before training with one line (issue 13, #2 and #14), a disk that
 * fills up during the run stops it naming the file (#2), and a second run on the same paths is
 * refused while the first holds its lock, which a later run takes over once its holder is dead (#8).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { packagePath, tsNodeArgs } from '../../shared/runtime.js';
import { freePort, spawnWorkers, type WorkerExit } from '../helpers/workers.js';
import { waitFor } from '../helpers/launcher_run.js';
import { tinyGpt } from '../helpers/tiny_gpt.js';

/** Issue 13's tiny model `T`, on the toy data, a few steps. */
const T = tinyGpt({ 'vocab-size': 256, 'd-model': 32, 'd-ff': 64, 'batch-size': 2, dataset: 'toy:40', 'collective-timeout': 60 });

const root = mkdtempSync(join(tmpdir(), 'rosedist-outputs-'));
after(() => rmSync(root, { recursive: true, force: true }));

async function run(worldSize: number, args: string[]): Promise<WorkerExit[]> {
  const group = await spawnWorkers('worker/train_ddp.ts', worldSize, [...T, ...args], { masterPort: await freePort() });
  return group.exited;
}

/** Every rank exited 2 with `message` on one line, no stack trace, and nothing trained. */
function assertRefused(exits: WorkerExit[], message: RegExp): void {
  for (const e of exits) {
    assert.equal(e.code, 2, `rank ${e.rank}: ${e.stderr}`);
    assert.match(e.stderr, message, `rank ${e.rank}`);
    assert.doesNotMatch(e.stderr, /    at /, 'one line, no stack trace');
    assert.doesNotMatch(e.stdout, /step 1\//, 'refused before training');
  }
}

describe('output paths are checked before training (2 ranks)', () => {
  it('--log-file naming an existing directory', async () => {
    const dir = join(root, 'log-is-dir');
    mkdirSync(dir, { recursive: true });
    const exits = await run(2, ['--num-steps', '2', '--log-file', dir, '--checkpoint-path', join(dir, 'c.safetensors')]);
    assertRefused(exits, new RegExp(`--log-file ${dir} is a directory, not a log file \\(name a file, e.g. --log-file ${dir}/train.log\\)`));
    assert.deepEqual(readdirSync(dir), [], 'nothing written');
  });

  it('--log-file under a path that is a file', async () => {
    const dir = join(root, 'under-file');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'a'), 'a file');
    const exits = await run(2, ['--num-steps', '2', '--log-file', join(dir, 'a', 'x.log'), '--checkpoint-path', join(dir, 'c.safetensors')]);
    assertRefused(exits, new RegExp(`--log-file ${dir}/a/x.log: ${dir}/a is a file, not a directory`));
    assert.deepEqual(readdirSync(dir), ['a']);
  });

  it('--checkpoint-path and --log-file on the same file', async () => {
    const dir = join(root, 'same-file');
    const x = join(dir, 'x');
    const exits = await run(2, ['--num-steps', '2', '--log-file', x, '--checkpoint-path', x]);
    assertRefused(exits, /--checkpoint-path and --log-file are the same file \(.*\/x\): the checkpoint would overwrite the log file \(give each its own path/);
    assert.equal(existsSync(dir), false, 'nothing created');
  });

  it('--checkpoint-path naming a directory (dir/) fails at start, not at the first save', async () => {
    const dir = join(root, 'ckpt-dir');
    const exits = await run(2, ['--num-steps', '2', '--log-file', join(dir, 't.log'), '--checkpoint-path', `${dir}/ck/`]);
    assertRefused(exits, /--checkpoint-path .*\/ck\/ names a directory, not a checkpoint \(name a file, e\.g\. --checkpoint-path .*\/ck\/ckpt\.safetensors\)/);
    assert.equal(existsSync(dir), false, 'nothing created');
  });
});

/** Can this process mount a tmpfs in a user namespace of its own (unshare -rm)? */
const canUnshare = spawnSync('unshare', ['-rm', 'sh', '-c', `mount -t tmpfs -o size=8k tmpfs ${tmpdir()}`]).status === 0;

describe('a full disk', () => {
  it('stops the run with one line naming the file that could not be written', { skip: !canUnshare && 'needs unshare -rm and tmpfs' }, () => {
    const mnt = join(root, 'full');
    mkdirSync(mnt, { recursive: true });
    // A private 8 KiB tmpfs (two pages): the log's header fits, the evaluations soon do not.
    const node = [
      process.execPath,
      ...tsNodeArgs(),
      packagePath('worker/train_minimal.ts'),
      ...T,
      '--num-steps',
      '40',
      '--eval-interval',
      '1',
      '--log-file',
      join(mnt, 't.log'),
      '--checkpoint-path',
      join(root, 'full.safetensors'),
    ];
    const r = spawnSync('unshare', ['-rm', 'sh', '-c', `mount -t tmpfs -o size=8k tmpfs "$0" && exec "$@"`, mnt, ...node], { encoding: 'utf8' });
    assert.equal(r.status, 1, r.stderr);
    const errors = r.stderr.split('\n').filter((l) => /ERROR/.test(l));
    assert.equal(errors.length, 1, r.stderr);
    assert.match(errors[0] ?? '', new RegExp(`cannot write the (log|metrics) file ${mnt}/t\\.(log|metrics\\.jsonl): ENOSPC.*\\(free space on its disk`));
    assert.doesNotMatch(r.stderr, /    at /);
    assert.equal(existsSync(join(root, 'full.safetensors')), false, 'stopped before the end');
  });
});

describe('two runs on the same paths', () => {
  it('the second is refused naming the holder; SIGTERM ends the holder and removes its locks', async () => {
    const dir = join(root, 'locked');
    const args = ['--log-file', join(dir, 'train.log'), '--checkpoint-path', join(dir, 'ckpt.safetensors')];
    const lockFile = join(dir, 'train.log.lock');
    const first = await spawnWorkers('worker/train_ddp.ts', 1, [...T, ...args, '--num-steps', '1000000'], { masterPort: await freePort() });
    try {
      await waitFor('the first run to take its lock', () => existsSync(lockFile), 60_000);
      const holder = JSON.parse(readFileSync(lockFile, 'utf8')) as { pid: number; runId: string };
      assert.equal(holder.pid, first.children[0]?.pid);
      // Another checkpoint, the same log: still refused.
      const second = await run(2, [...args.slice(0, 2), '--checkpoint-path', join(dir, 'other.safetensors'), '--num-steps', '2']);
      assertRefused(
        second,
        new RegExp(
          `--log-file .*train.log is in use by run ${holder.runId} \\(pid ${holder.pid} on .*, since .*\\) \\(wait for that run to end, or pick another --log-file\\)`,
        ),
      );
      assert.equal(existsSync(join(dir, 'other.safetensors.lock')), false, 'the refused run left no lock behind');
      first.children[0]?.kill('SIGTERM');
      const [exit] = await first.exited;
      assert.equal(exit?.signal, 'SIGTERM', 'still ends by the signal');
    } finally {
      first.kill();
      await first.exited;
    }
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.endsWith('.lock')),
      [],
      'SIGTERM removed the locks',
    );
  });

  it('a stale lock of a dead pid (a SIGKILLed run) is taken over with a warning; the lock is gone at the end', async () => {
    const dir = join(root, 'stale');
    mkdirSync(dir, { recursive: true });
    const dead = spawnSync('true').pid ?? 999_999;
    const stale = { pid: dead, host: hostname(), runId: 'killed-run', since: '2026-01-01T00:00:00.000Z' };
    writeFileSync(join(dir, 'ckpt.safetensors.lock'), JSON.stringify(stale));
    const exits = await run(1, ['--log-file', join(dir, 'train.log'), '--checkpoint-path', join(dir, 'ckpt.safetensors'), '--num-steps', '2']);
    assert.equal(exits[0]?.code, 0, exits[0]?.stderr);
    assert.match(
      exits[0]?.stderr ?? '',
      new RegExp(
        `WARN: --checkpoint-path .*ckpt.safetensors: taking over the stale lock of run killed-run \\(pid ${dead} on .*\\), which is no longer running`,
      ),
    );
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.endsWith('.lock')),
      [],
      'no lock left after a clean end',
    );
  });
});
