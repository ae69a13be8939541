/** Timeouts and intervals beyond 2^31 ms mean "a very long time", not "at once" (shared/timers.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURE, isAlive, runLauncher, startLauncher, tempDir, waitFor } from '../helpers/launcher_run.js';
import { freePortPair } from '../helpers/launcher_ports.js';

test('--join-timeout 10000000 (and inf): node 0 keeps waiting instead of failing at once', { timeout: 60_000 }, async () => {
  const secret = join(tempDir('join'), 'secret');
  writeFileSync(secret, randomBytes(32).toString('hex'));
  for (const value of ['10000000', 'inf']) {
    const port = await freePortPair();
    const n0 = startLauncher(['--nnodes', '2', '--master-port', String(port), '--secret-file', secret, '--join-timeout', value, FIXTURE]);
    await waitFor('node 0 to listen', () => /listens on/.test(n0.stderr()));
    // The old launcher gave up here after 1.7 s ("did not join"). Two seconds of waiting show it does not.
    await new Promise((r) => setTimeout(r, 2500));
    assert.ok(isAlive(n0.child.pid ?? 0), `node 0 is still waiting with --join-timeout ${value}: ${n0.stderr()}`);
    n0.child.kill('SIGTERM');
    const r = await n0.done;
    assert.doesNotMatch(r.stderr, /did not join|TimeoutOverflowWarning/);
    assert.equal(r.code, 143, r.stderr);
  }
});

test("--monitor-interval 10000000: no TimeoutOverflowWarning, and the workers' exit is still noticed at once", { timeout: 60_000 }, async () => {
  const r = await runLauncher(['--nproc-per-node', '2', '--monitor-interval', '10000000', FIXTURE, '--sleep', '300']);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /TimeoutOverflowWarning/);
  assert.match(r.stderr, /succeeded on attempt 0/);
});

test('a node-rank-1 launcher retrying to reach node 0 adds no abort listener per retry (no MaxListenersExceededWarning)', { timeout: 60_000 }, async () => {
  const secret = join(tempDir('join'), 'secret');
  writeFileSync(secret, randomBytes(32).toString('hex'));
  const port = await freePortPair();
  // Nobody listens on node 0's port: the launcher retries every 500 ms; 12 retries pass the default limit of 10 listeners.
  const n1 = startLauncher(['--nnodes', '2', '--node-rank', '1', '--master-port', String(port), '--secret-file', secret, '--join-timeout', '7', FIXTURE]);
  const r = await n1.done;
  assert.match(r.stderr, /node 0 did not answer at 127\.0\.0\.1:\d+ within 7 s/);
  assert.doesNotMatch(r.stderr, /MaxListenersExceededWarning/);
  assert.equal(r.stderr.split('\n').filter((l) => l !== '').length, 1, r.stderr);
});

test('elastic: --rdzv-timeout 10000000 keeps the host waiting for MIN nodes instead of failing at once', { timeout: 60_000 }, async () => {
  const port = await freePortPair();
  const host = startLauncher(['--nnodes', '2:3', '--master-port', String(port), '--secret', 'b'.repeat(32), '--rdzv-timeout', '10000000', FIXTURE]);
  await new Promise((r) => setTimeout(r, 4000));
  assert.ok(isAlive(host.child.pid ?? 0), `the host is still waiting: ${host.stderr()}`);
  host.child.kill('SIGTERM');
  const r = await host.done;
  assert.doesNotMatch(r.stderr, /TimeoutOverflowWarning|did not|timed out/);
});

test('elastic: a launcher retrying to reach the rendezvous host adds no abort listener per retry', { timeout: 60_000 }, async () => {
  const port = await freePortPair();
  // A socket bound to the control port without listening: this launcher cannot host (EADDRINUSE)
  // and its connections are refused, so it retries every 500 ms until --rdzv-timeout.
  const holder = spawn(
    'python3',
    ['-c', `import socket, sys, time\ns = socket.socket()\ns.bind(('127.0.0.1', ${port + 1}))\nprint('bound', flush=True)\ntime.sleep(60)`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  try {
    await new Promise((r) => holder.stdout.once('data', r));
    const r = await runLauncher(['--nnodes', '1:2', '--master-port', String(port), '--secret', 'b'.repeat(32), '--rdzv-timeout', '7', FIXTURE]);
    assert.match(r.stderr, /no rendezvous host answered at 127\.0\.0\.1:\d+ within --rdzv-timeout 7 s/);
    assert.doesNotMatch(r.stderr, /MaxListenersExceededWarning/);
  } finally {
    holder.kill('SIGKILL');
  }
});
