/**
 * What a worker starts ends with the run (issue 13 #3): each worker leads a process group that
 * the launcher signals whole, on failure, on success, on Ctrl-C, and when the launcher is killed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isAlive, startLauncher, tempDir, waitFor } from '../helpers/launcher_run.js';

const OUTPUT_WORKER = fileURLToPath(new URL('../fixtures/output_worker.ts', import.meta.url));

/** The pids the fixture wrote in `dir`: its workers and their children. */
function pids(dir: string, ranks: number[]): { workers: number[]; children: number[] } {
  const read = (name: string) => Number(readFileSync(join(dir, name), 'utf8'));
  return { workers: ranks.map((r) => read(`worker_${r}.pid`)), children: ranks.map((r) => read(`child_${r}.pid`)) };
}

/** 2 workers, each with a child (rank 1's ignores SIGTERM with `stubborn`); resolves once all are up. */
async function treeRun(extra: string[], stubborn: boolean) {
  const dir = tempDir('tree');
  const launch = startLauncher(['--nproc-per-node', '2', OUTPUT_WORKER, '--spawn-child', dir, ...(stubborn ? ['--stubborn'] : []), ...extra]);
  await waitFor('both workers and their children to start', () =>
    [0, 1].every((r) => existsSync(join(dir, `child_${r}.pid`)) && existsSync(join(dir, `worker_${r}.pid`))),
  );
  const p = pids(dir, [0, 1]);
  return { launch, ...p };
}

/** The bound turns a leftover into a failure instead of a hang; it does not measure speed. */
async function allGone(what: string, list: number[]): Promise<void> {
  await waitFor(what, () => list.every((pid) => !isAlive(pid)), 15_000);
}

test("a worker fails: its child and the other rank's child (one ignoring SIGTERM) are ended too", { timeout: 60_000 }, async () => {
  for (const stubborn of [false, true]) {
    const dir = tempDir('tree');
    const launch = startLauncher(['--nproc-per-node', '2', OUTPUT_WORKER, '--spawn-child', dir, '--exit-after', '1500', ...(stubborn ? ['--stubborn'] : [])]);
    const r = await launch.done;
    assert.equal(r.code, 1, r.stderr);
    const { workers, children } = pids(dir, [0, 1]);
    await allGone(`the children (stubborn: ${stubborn})`, [...workers, ...children]);
    if (stubborn) assert.match(r.stderr, /still running after the grace period: SIGKILL/);
  }
});

test('a worker succeeds but leaves a child running: the child ends with the run', { timeout: 60_000 }, async () => {
  const dir = tempDir('tree');
  const launch = startLauncher([OUTPUT_WORKER, '--spawn-child', dir, '--exit-after', '200', '--exit-code', '0']);
  const r = await launch.done;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /ranks 0 exited, but processes they started still run: sending them SIGTERM/);
  await allGone('the child', pids(dir, [0]).children);
});

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  test(`${signal} to the launcher: forwarded to the workers' whole trees, a child ignoring SIGTERM included`, { timeout: 60_000 }, async () => {
    const { launch, workers, children } = await treeRun([], true);
    launch.child.kill(signal);
    const r = await launch.done;
    assert.equal(r.code, 128 + { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 }[signal], r.stderr);
    await allGone('workers and children', [...workers, ...children]);
  });
}

test('SIGKILL of the launcher: the orphaned workers end their trees, a child ignoring SIGTERM included', { timeout: 60_000 }, async () => {
  const { launch, workers, children } = await treeRun([], true);
  launch.child.kill('SIGKILL');
  await launch.done;
  await allGone('workers and children', [...workers, ...children]);
});
