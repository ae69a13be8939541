import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { FIXTURE, isAlive, launcherLines, startLauncher, tempDir, waitFor, workerRecords } from '../helpers/launcher_run.js';
import { freePortPair } from '../helpers/launcher_ports.js';

/** Options of a 2-node run on loopback sharing `secretFile`. */
function node(rank: number, port: number, secretFile: string, nproc: number, extra: string[] = []): string[] {
  return [
    '--nnodes',
    '2',
    '--node-rank',
    String(rank),
    '--master-addr',
    '127.0.0.1',
    '--master-port',
    String(port),
    '--secret-file',
    secretFile,
    '--nproc-per-node',
    String(nproc),
    ...extra,
  ];
}

function secretFile(): string {
  const file = join(tempDir('secret'), 'secret');
  writeFileSync(file, randomBytes(32).toString('hex'));
  return file;
}

/** Connect to the control port, send `line`, resolve when node 0 hangs up. */
function stranger(port: number, line: string): Promise<void> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => s.write(line));
    s.resume();
    s.on('error', () => resolve());
    s.on('close', () => resolve());
  });
}

test('two launchers on loopback form one group; strangers on the control port are refused and logged', { timeout: 90_000 }, async () => {
  const port = await freePortPair();
  const secret = secretFile();
  const out = tempDir('mn');
  const worker = [FIXTURE, '--out', out, '--sleep', '300'];
  const n0 = startLauncher([...node(0, port, secret, 2, ['--run-id', 'pair']), ...worker]);
  await waitFor('node 0 to listen', () => /listens on/.test(n0.stderr()));
  await stranger(port + 1, 'garbage\n');
  await stranger(port + 1, '0123abcd {"type":"hello","version":1,"nodeRank":1}\n');
  await waitFor('both strangers to be logged', () => (n0.stderr().match(/rejected a control connection/g) ?? []).length === 2);
  const n1 = startLauncher([...node(1, port, secret, 1), ...worker]);
  const [r0, r1] = await Promise.all([n0.done, n1.done]);
  assert.equal(r0.code, 0, r0.stderr);
  assert.equal(r1.code, 0, r1.stderr);
  const records = workerRecords(out);
  assert.deepEqual([...records.keys()], ['attempt_0_rank_0', 'attempt_0_rank_1', 'attempt_0_rank_2']);
  const envs = [...records.values()].map((r) => r.env);
  assert.deepEqual(
    envs.map((e) => [e.RANK, e.LOCAL_RANK, e.GROUP_RANK, e.LOCAL_WORLD_SIZE]),
    [
      ['0', '0', '0', '2'],
      ['1', '1', '0', '2'],
      ['2', '0', '1', '1'],
    ],
  );
  for (const e of envs) {
    assert.deepEqual([e.WORLD_SIZE, e.GROUP_WORLD_SIZE, e.MASTER_PORT, e.ROSEDIST_RUN_ID], ['3', '2', String(port), 'pair'], "node 1 adopted node 0's run id");
    assert.equal(e.ROSEDIST_SECRET, envs[0]?.ROSEDIST_SECRET);
  }
  assert.notEqual(envs[0]?.ROSEDIST_NODE_ID, envs[2]?.ROSEDIST_NODE_ID);
  assert.match(r0.stderr, /authentication failed/);
});

test("one node's failure tears down both; with a restart left both restart together", { timeout: 90_000 }, async () => {
  const port = await freePortPair();
  const secret = secretFile();
  const out = tempDir('mnfail');
  // Rank 2 (node 1) exits 3 on attempt 0, while node 0's ranks would sleep a minute; attempt 1 just succeeds.
  const worker = [FIXTURE, '--out', out, '--sleep', '60000', '--sleep-attempts', '1', '--fail-rank', '2', '--fail-attempts', '1'];
  const n0 = startLauncher([...node(0, port, secret, 2, ['--max-restarts', '1']), ...worker]);
  const n1 = startLauncher([...node(1, port, secret, 1, ['--max-restarts', '1']), ...worker]);
  const [r0, r1] = await Promise.all([n0.done, n1.done]);
  assert.deepEqual([r0.code, r1.code], [0, 0], r0.stderr + r1.stderr);
  const records = workerRecords(out);
  assert.deepEqual(
    [...records.keys()].filter((k) => k.startsWith('attempt_1')),
    ['attempt_1_rank_0', 'attempt_1_rank_1', 'attempt_1_rank_2'],
  );
  assert.ok([0, 1, 2].every((r) => records.get(`attempt_1_rank_${r}`)?.env.ROSEDIST_RESTART_COUNT === '1'));
  for (const r of [r0, r1]) {
    assert.match(r.stderr, /rank 2 \(local rank 0, node 1\) exited with code 3; restarting the group \(restart 1 of 1\)/);
    assert.match(r.stderr, /succeeded on attempt 1/);
  }
  assert.match(r0.stderr, /sending SIGTERM to ranks 0, 1/, 'node 0 stopped its healthy workers');
});

test('Ctrl-C on node 1 ends the run on both nodes, without restart', { timeout: 90_000 }, async () => {
  const port = await freePortPair();
  const secret = secretFile();
  const out = tempDir('mnint');
  const worker = [FIXTURE, '--out', out, '--sleep', '60000'];
  const n0 = startLauncher([...node(0, port, secret, 1, ['--max-restarts', '3']), ...worker]);
  const n1 = startLauncher([...node(1, port, secret, 1, ['--max-restarts', '3']), ...worker]);
  await waitFor('both workers to start', () => workerRecords(out).size === 2, 60_000);
  n1.child.kill('SIGINT');
  const [r0, r1] = await Promise.all([n0.done, n1.done]);
  assert.deepEqual([r0.code, r1.code], [1, 130], r0.stderr + r1.stderr);
  assert.match(launcherLines(r0.stderr).join('\n'), /reason: the launcher of node 1 received SIGINT/);
  assert.deepEqual([...workerRecords(out).values()].map((r) => r.pid).filter(isAlive), []);
  assert.equal(workerRecords(out).size, 2, 'no restart');
});

test('without restarts a failure on node 1 ends both launchers with the same root cause', { timeout: 90_000 }, async () => {
  const port = await freePortPair();
  const secret = secretFile();
  const out = tempDir('mnend');
  const worker = [FIXTURE, '--out', out, '--sleep', '60000', '--fail-rank', '2'];
  const n0 = startLauncher([...node(0, port, secret, 2), ...worker]);
  const n1 = startLauncher([...node(1, port, secret, 1), ...worker]);
  const [r0, r1] = await Promise.all([n0.done, n1.done]);
  assert.deepEqual([r0.code, r1.code], [1, 1], r0.stderr + r1.stderr);
  for (const r of [r0, r1]) assert.match(r.stderr, /root cause \(first failure\):\n.*rank 2 \(local rank 0, node 1 .*\) exited with code 3/);
  const pids = [...workerRecords(out).values()].map((r) => r.pid);
  assert.deepEqual(pids.filter(isAlive), []);
});

test('a launcher with another secret is refused; node 0 keeps waiting and Ctrl-C ends it', { timeout: 60_000 }, async () => {
  const port = await freePortPair();
  const n0 = startLauncher([...node(0, port, secretFile(), 1), FIXTURE]);
  await waitFor('node 0 to listen', () => /listens on/.test(n0.stderr()));
  const n1 = await startLauncher([...node(1, port, secretFile(), 1), FIXTURE]).done;
  assert.equal(n1.code, 2);
  assert.match(n1.stderr, /^rosedist: node 0 at 127\.0\.0\.1:\d+ refused this launcher: authentication failed/);
  await waitFor('node 0 to log the refusal', () => /rejected a control connection .*authentication failed/.test(n0.stderr()));
  n0.child.kill('SIGINT');
  const r0 = await n0.done;
  assert.equal(r0.code, 130);
  assert.match(r0.stderr, /interrupted by SIGINT while the nodes were joining/);
});

test("SIGKILL of node 0's launcher: node 1 loses contact, stops its workers and fails; no orphans anywhere", { timeout: 90_000 }, async () => {
  const port = await freePortPair();
  const secret = secretFile();
  const out = tempDir('mnkill');
  const worker = [FIXTURE, '--out', out, '--sleep', '60000'];
  const n0 = startLauncher([...node(0, port, secret, 1, ['--max-restarts', '3']), ...worker]);
  const n1 = startLauncher([...node(1, port, secret, 1, ['--max-restarts', '3']), ...worker]);
  await waitFor('both workers to start', () => workerRecords(out).size === 2, 60_000);
  n0.child.kill('SIGKILL');
  const r1 = await n1.done;
  assert.equal(r1.code, 1, r1.stderr);
  assert.match(launcherLines(r1.stderr).join('\n'), /reason: lost contact with node 0's launcher/);
  const pids = [...workerRecords(out).values()].map((r) => r.pid);
  await waitFor('every worker to exit', () => pids.every((pid) => !isAlive(pid)), 15_000);
  assert.equal(workerRecords(out).size, 2, 'no restart without node 0');
});
