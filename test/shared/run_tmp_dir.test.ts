/** The run's temporary directory: removed once every holder is provably gone, and only then. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { addWorkers, abandoned, makeRunTmpDir, removeIfAbandoned, sweepAbandoned } from '../../shared/run_tmp_dir.js';
import { packagePath, tsNodeArgs } from '../../shared/runtime.js';
import { tempDir } from '../helpers/temp_dir.js';

/** The pid of a process that has exited. */
function deadPid(): number {
  return Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
}

test('held by a running process: kept; all holders gone: removed by the sweep', () => {
  const base = tempDir('runtmp');
  const dir = makeRunTmpDir(base);
  assert.match(readFileSync(`${dir}/holders`, 'utf8'), new RegExp(`^launcher ${process.pid} \\d*\\n$`));
  assert.equal(abandoned(dir), false, 'its launcher (this process) runs');
  assert.deepEqual(sweepAbandoned(base), []);
  const other = makeRunTmpDir(base);
  addWorkers(other, [deadPid()]);
  // The launcher line names this process: rewrite it as a dead launcher's.
  spawnSync('sed', ['-i', `s/^launcher ${process.pid} /launcher ${deadPid()} /`, `${other}/holders`]);
  assert.equal(abandoned(other), true);
  assert.deepEqual(sweepAbandoned(base), [other]);
  assert.ok(existsSync(dir) && !existsSync(other));
  assert.equal(removeIfAbandoned(dir), false);
});

test('two orphaned workers leaving at the same moment: one of them always removes the directory', { timeout: 120_000 }, async () => {
  const base = tempDir('runtmp');
  const script = `
    import { leaveRunTmpDir } from ${JSON.stringify(packagePath('shared/run_tmp_dir.ts'))};
    const dir = process.argv.at(-1);
    process.stdout.write('ready\\n');
    process.stdin.once('data', (d) => { const at = Number(String(d)); while (Date.now() < at) {} leaveRunTmpDir(dir); process.stdin.destroy(); });`;
  for (let round = 0; round < 5; round += 1) {
    const dir = makeRunTmpDir(base);
    spawnSync('sed', ['-i', `s/^launcher ${process.pid} /launcher ${deadPid()} /`, `${dir}/holders`]);
    const workers = [0, 1].map(() =>
      spawn(process.execPath, [...tsNodeArgs(), '--input-type=module', '-e', script, dir], { stdio: ['pipe', 'pipe', 'inherit'] }),
    );
    addWorkers(
      dir,
      workers.map((w) => w.pid ?? 0),
    );
    await Promise.all(workers.map((w) => new Promise((r) => w.stdout.once('data', r))));
    // Both spin until the same instant, then leave.
    const at = String(Date.now() + 200);
    for (const w of workers) w.stdin.write(`${at}\n`);
    await Promise.all(workers.map((w) => new Promise((r) => w.once('exit', r))));
    assert.ok(!existsSync(dir), `round ${round}: the directory is gone`);
  }
});
