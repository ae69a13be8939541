import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FIXTURE, isAlive, startLauncher, tempDir, waitFor, workerRecords } from '../helpers/launcher_run.js';

/** A launcher with 2 workers that would sleep a minute; resolves once both are up, with their pids. */
async function sleepingRun(extra: string[] = []) {
  const out = tempDir('sig');
  const launch = startLauncher(['--nproc-per-node', '2', '--max-restarts', '3', ...extra, FIXTURE, '--out', out, '--sleep', '60000']);
  await waitFor('both workers to start', () => workerRecords(out).size === 2);
  const pids = [...workerRecords(out).values()].map((r) => r.pid);
  assert.ok(pids.every(isAlive));
  return { launch, pids, out };
}

test('Ctrl-C: SIGINT is forwarded, the workers end, the launcher exits 130 without restarting', { timeout: 60_000 }, async () => {
  const { launch, pids, out } = await sleepingRun();
  launch.child.kill('SIGINT');
  const r = await launch.done;
  assert.equal(r.code, 130, r.stderr);
  assert.match(r.stderr, /received SIGINT: forwarding it to the workers/);
  assert.match(r.stderr, /sending SIGINT to ranks 0, 1/);
  assert.deepEqual(pids.filter(isAlive), [], 'no worker outlives the launcher');
  assert.equal(workerRecords(out).size, 2, 'no restart after an interrupt');
});

test('SIGTERM to the launcher: exit 143, workers gone', { timeout: 60_000 }, async () => {
  const { launch, pids } = await sleepingRun();
  launch.child.kill('SIGTERM');
  const r = await launch.done;
  assert.equal(r.code, 143, r.stderr);
  assert.deepEqual(pids.filter(isAlive), []);
});

test('SIGKILL of the launcher leaves no orphans: the workers notice and exit', { timeout: 60_000 }, async () => {
  const { launch, pids } = await sleepingRun();
  launch.child.kill('SIGKILL');
  const r = await launch.done;
  assert.equal(r.signal, 'SIGKILL');
  // The bound is there so that an orphan fails the test instead of hanging it.
  await waitFor('the orphaned workers to exit', () => pids.every((pid) => !isAlive(pid)), 15_000);
});
