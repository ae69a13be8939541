import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURE, runLauncher, tempDir } from '../helpers/launcher_run.js';

const outText = (r: number) => `out line 1 of rank ${r}\nout line 2 of rank ${r}\nout partial of rank ${r}`;
const errText = (r: number) => `err line of rank ${r}\nerr partial of rank ${r}`;

test('--redirects 1 --tee 2: stdout only in files, stderr in files and on the console', { timeout: 60_000 }, async () => {
  const logs = tempDir('redirect');
  const r = await runLauncher(['--nproc-per-node', '2', '--log-dir', logs, '--run-id', 'logged', '--redirects', '1', '--tee', '2', FIXTURE, '--print']);
  assert.equal(r.code, 0, r.stderr);
  for (const rank of [0, 1]) {
    const dir = join(logs, 'logged', 'attempt_0', String(rank));
    assert.equal(readFileSync(join(dir, 'stdout.log'), 'utf8'), outText(rank), 'files hold the raw bytes');
    assert.equal(readFileSync(join(dir, 'stderr.log'), 'utf8'), errText(rank));
    assert.match(r.stderr, new RegExp(`^\\[rank${rank}\\]:err line of rank ${rank}$`, 'm'));
    assert.match(r.stderr, new RegExp(`^\\[rank${rank}\\]:err partial of rank ${rank}$`, 'm'), 'a last partial line is flushed');
  }
  assert.equal(r.stdout, '', 'redirected stdout stays off the console');
});

test('console lines carry their rank; --local-ranks-filter shows only some ranks', { timeout: 60_000 }, async () => {
  const r = await runLauncher(['--nproc-per-node', '2', '--local-ranks-filter', '1', FIXTURE, '--print']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(
    r.stdout.split('\n').filter((l) => l !== ''),
    outText(1)
      .split('\n')
      .map((l) => `[rank1]:${l}`),
  );
  assert.doesNotMatch(r.stdout + r.stderr, /\[rank0\]/);
  assert.match(r.stderr, /^\[rank1\]:err line of rank 1$/m);
});
