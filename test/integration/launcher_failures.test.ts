import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURE, isAlive, launcherLines, runLauncher, startLauncher, tempDir, waitFor, workerRecords } from '../helpers/launcher_run.js';

/** The summary block: from the "failed on attempt" line to the end of stderr. */
function summary(stderr: string): string {
  const lines = launcherLines(stderr);
  const start = lines.findIndex((l) => /failed on attempt/.test(l));
  assert.ok(start >= 0, `no summary in:\n${stderr}`);
  return lines.slice(start).join('\n');
}

/** Start 2 workers where rank 1 fails as `how` and rank 0 would sleep a minute; return the run's records and result. */
async function failingRun(how: string, extra: string[] = []) {
  const out = tempDir('fail');
  const launch = startLauncher(['--nproc-per-node', '2', ...extra, FIXTURE, '--out', out, '--sleep', '60000', '--fail-rank', '1', '--how', how]);
  const r = await launch.done;
  const records = workerRecords(out);
  return { r, records, out };
}

test('a worker that exits 3: the others are stopped, the launcher exits 1 with the root cause', { timeout: 60_000 }, async (t) => {
  const { r, records } = await failingRun('exit:3');
  assert.equal(r.code, 1, r.stderr);
  const s = summary(r.stderr);
  const failed = records.get('attempt_0_rank_1');
  assert.match(s, new RegExp(`root cause \\(first failure\\):\\n.*rank 1 \\(local rank 1, node 0 .*#0, pid ${failed?.pid}\\) exited with code 3 at \\d{4}-`));
  assert.doesNotMatch(s, /other failures/, 'rank 0 was stopped by the launcher: not a failure');
  assert.match(r.stderr, /sending SIGTERM to ranks 0/);
  const rank0 = records.get('attempt_0_rank_0');
  assert.ok(rank0 && !isAlive(rank0.pid), 'rank 0 is gone');
  // Reported, not asserted (speed is not a test's business): death → summary, from the worker's own timestamp.
  const m = /exited with code 3 at (\S+)/.exec(s);
  if (m?.[1]) t.diagnostic(`summary printed ~${Date.now() - Date.parse(m[1])} ms after the death, including process teardown`);
});

test('a worker killed by SIGKILL is named with its signal', { timeout: 60_000 }, async () => {
  const { r } = await failingRun('sigkill');
  assert.equal(r.code, 1, r.stderr);
  assert.match(summary(r.stderr), /rank 1 \(local rank 1, .*\) was killed by SIGKILL at/);
  assert.match(summary(r.stderr), /message: \(no error file/);
});

test('a worker that throws: its message is in the summary and its error file in the log dir', { timeout: 60_000 }, async () => {
  const logs = tempDir('logs');
  const { r } = await failingRun('throw:the-fixture-broke', ['--log-dir', logs, '--run-id', 'thrown']);
  assert.equal(r.code, 1, r.stderr);
  const s = summary(r.stderr);
  assert.match(s, /rank 1 .* exited with code 1 at/);
  assert.match(s, /message: the-fixture-broke/);
  const errorFile = join(logs, 'thrown', 'attempt_0', '1', 'error.json');
  assert.match(s, new RegExp(`error file: ${errorFile}`));
  const record = JSON.parse(readFileSync(errorFile, 'utf8')) as { message: string; rank: number };
  assert.deepEqual([record.message, record.rank], ['the-fixture-broke', 1]);
  assert.match(r.stderr, /\[rank1\]:Error: the-fixture-broke/, "Node's own report still reaches the console");
  assert.ok(!existsSync(join(logs, 'thrown', 'attempt_0', '0', 'error.json')), 'the stopped rank wrote none');
});

test('--max-restarts: the group restarts with the restart count in its environment, then succeeds', { timeout: 90_000 }, async () => {
  const out = tempDir('restart');
  const r = await runLauncher([
    '--nproc-per-node',
    '2',
    '--max-restarts',
    '3',
    FIXTURE,
    '--out',
    out,
    '--sleep',
    '200',
    '--fail-rank',
    '1',
    '--fail-attempts',
    '2',
    '--how',
    'sigkill',
  ]);
  assert.equal(r.code, 0, r.stderr);
  const records = workerRecords(out);
  assert.deepEqual(
    [...records.keys()],
    ['attempt_0_rank_0', 'attempt_0_rank_1', 'attempt_1_rank_0', 'attempt_1_rank_1', 'attempt_2_rank_0', 'attempt_2_rank_1'],
  );
  for (const [name, rec] of records) {
    assert.equal(rec.env.ROSEDIST_RESTART_COUNT, name.slice('attempt_'.length, name.indexOf('_rank')));
  }
  const restarts = launcherLines(r.stderr).filter((l) => /restarting the group/.test(l));
  assert.equal(restarts.length, 2);
  assert.match(restarts[0] ?? '', /rank 1 \(local rank 1, node 0\) was killed by SIGKILL; restarting the group \(restart 1 of 3\)/);
  assert.match(restarts[1] ?? '', /restart 2 of 3/);
  assert.match(r.stderr, /succeeded on attempt 2/);
});

test('out of restarts: the last attempt is summarised and the exit code is 1', { timeout: 90_000 }, async () => {
  const out = tempDir('exhaust');
  const r = await runLauncher([
    '--nproc-per-node',
    '2',
    '--max-restarts',
    '1',
    FIXTURE,
    '--out',
    out,
    '--sleep',
    '60000',
    '--fail-rank',
    '0',
    '--how',
    'exit:5',
  ]);
  assert.equal(r.code, 1, r.stderr);
  assert.deepEqual(
    [...workerRecords(out).keys()].filter((k) => k.endsWith('rank_0')),
    ['attempt_0_rank_0', 'attempt_1_rank_0'],
  );
  assert.match(summary(r.stderr), /failed on attempt 1 \(max restarts 1\)[\s\S]*rank 0 .* exited with code 5/);
});

test('a worker that ignores SIGTERM is killed after the grace period', { timeout: 60_000 }, async () => {
  const out = tempDir('stubborn');
  const launch = startLauncher([
    '--nproc-per-node',
    '2',
    FIXTURE,
    '--out',
    out,
    '--sleep',
    '60000',
    '--fail-rank',
    '1',
    '--fail-after',
    '1500',
    '--ignore-sigterm',
  ]);
  const r = await launch.done;
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /ranks 0 still running after the grace period: SIGKILL/);
  const rank0 = workerRecords(out).get('attempt_0_rank_0');
  assert.ok(rank0);
  await waitFor('rank 0 to be gone', () => !isAlive(rank0.pid), 5000);
});
