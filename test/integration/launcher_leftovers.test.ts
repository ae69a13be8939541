/**
 * What a run leaves behind (issue 13 #12, #13, #14): the per-run temporary directory after a
 * SIGKILLed launcher, logs of a reused --run-id, and bad paths given as --log-dir or PROGRAM.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURE, isAlive, runLauncher, startLauncher, tempDir, waitFor, workerRecords } from '../helpers/launcher_run.js';

/** One-line bad input: exit 2, one line on stderr matching `pattern`, no stack. */
async function badInput(args: string[], pattern: RegExp): Promise<void> {
  const r = await runLauncher(args);
  assert.equal(r.code, 2, r.stderr);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0] ?? '', pattern);
}

test("SIGKILLed launcher: its workers exit and the last of them removes the run's temporary directory", { timeout: 60_000 }, async () => {
  const out = tempDir('leak');
  const launch = startLauncher(['--nproc-per-node', '2', FIXTURE, '--out', out, '--sleep', '60000']);
  await waitFor('both workers', () => workerRecords(out).size === 2);
  const records = [...workerRecords(out).values()];
  const dir = records[0]?.env.ROSEDIST_TMPDIR ?? '';
  assert.ok(dir.startsWith(join(tmpdir(), 'rosedist-')) && existsSync(dir), dir);
  assert.deepEqual(
    readFileSync(join(dir, 'holders'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(' ')[0]),
    ['launcher', 'worker', 'worker'],
  );
  // A socket-like file of a worker, as the ZeroMQ group makes (rosedist-pg-*/data.sock).
  mkdirSync(join(dir, 'rosedist-pg-x'));
  writeFileSync(join(dir, 'rosedist-pg-x', 'data.sock'), '');
  launch.child.kill('SIGKILL');
  await launch.done;
  await waitFor('the workers to exit', () => records.every((r) => !isAlive(r.pid)), 15_000);
  await waitFor('the directory to be removed', () => !existsSync(dir), 5000);
});

test('the next launcher removes abandoned run directories, and only those', { timeout: 60_000 }, async () => {
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  const deadPid = Number(dead.stdout);
  const make = (holders: string | undefined) => {
    const dir = join(tmpdir(), `rosedist-sweeptest${Math.random().toString(36).slice(2, 8)}`);
    mkdirSync(join(dir, 'rosedist-pg-1'), { recursive: true });
    writeFileSync(join(dir, 'rosedist-pg-1', 'control.sock'), '');
    if (holders !== undefined) writeFileSync(join(dir, 'holders'), holders);
    return dir;
  };
  const abandonedDir = make(`launcher ${deadPid} \nworker ${deadPid} \n`);
  const liveDir = make(`launcher ${deadPid} \nworker ${process.pid} \n`);
  const unknownDir = make(undefined);
  try {
    const r = await runLauncher([FIXTURE]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!existsSync(abandonedDir), 'every holder gone: removed');
    assert.ok(existsSync(liveDir), 'a holder runs: kept');
    assert.ok(existsSync(unknownDir), 'no holders file, nothing proves it abandoned: kept');
  } finally {
    for (const d of [abandonedDir, liveDir, unknownDir]) rmSync(d, { recursive: true, force: true });
  }
});

test("a reused --run-id gets a directory of its own; the earlier run's logs stay", { timeout: 60_000 }, async () => {
  const logs = tempDir('runid');
  for (let i = 0; i < 3; i += 1) {
    const r = await runLauncher(['--log-dir', logs, '--run-id', 'again', '--tee', '3', FIXTURE, '--print']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`logs in ${join(logs, i === 0 ? 'again' : `again_${i}`)}`));
  }
  assert.deepEqual(readdirSync(logs).sort(), ['again', 'again_1', 'again_2']);
  for (const d of ['again', 'again_1', 'again_2']) assert.match(readFileSync(join(logs, d, 'attempt_0', '0', 'stdout.log'), 'utf8'), /^out line 1 of rank 0/);
});

test('--log-dir naming a file, or under a file: one line, nothing started', { timeout: 60_000 }, async () => {
  const file = join(tempDir('logfile'), 'a-file');
  writeFileSync(file, 'x');
  await badInput(['--log-dir', file, FIXTURE], /^rosedist: --log-dir ".*a-file" cannot be used as a directory .*: it or one of its parents is a file/);
  await badInput(['--log-dir', join(file, 'sub'), FIXTURE], /^rosedist: --log-dir ".*a-file\/sub" cannot be used as a directory/);
  assert.equal(readFileSync(file, 'utf8'), 'x', 'the file is untouched');
});

test('--local-ranks-filter naming a rank that does not exist, and a directory as the program: one line each', { timeout: 60_000 }, async () => {
  await badInput(
    ['--nproc-per-node', '2', '--local-ranks-filter', '5', FIXTURE],
    /^rosedist: --local-ranks-filter "5" names local rank 5, but this node runs local ranks 0\.\.1/,
  );
  await badInput(['--nproc-per-node', '2', '--local-ranks-filter', '0,2,3', FIXTURE], /names local ranks 2, 3/);
  const dir = tempDir('progdir');
  await badInput([dir], /^rosedist: program ".*" is a directory, not a file: .* \(pass the path of a program file in it/);
});
