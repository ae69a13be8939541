/**
 * The ZeroMQ process group with real processes on loopback: test/fixtures/pg_worker.ts started
 * by test/helpers/workers.ts. Short timeouts keep the failure cases fast; every case ends
 * with all processes gone (spawnGroup kills stragglers).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packagePath } from '../../shared/runtime.js';
import { Dealer } from '../../worker/comm/zmq/zmq.js';
import { inputFor } from '../fixtures/pg_data.js';
import { freePort } from '../helpers/ports.js';
import { spawnGroup, type WorkerExit } from '../helpers/workers.js';

const WORKER = packagePath('test/fixtures/pg_worker.ts');

interface Reported {
  case: string;
  ok: boolean;
  digest?: string;
  first?: number | null;
}

function results(r: WorkerExit): Reported[] {
  return r.stdout
    .split('\n')
    .filter((l) => l.startsWith('RESULT '))
    .map((l) => JSON.parse(l.slice(7)) as Reported);
}

function assertAllPassed(runs: WorkerExit[], what: string): void {
  for (const r of runs) {
    assert.equal(r.code, 0, `${what}: rank ${r.rank} exited ${r.code} ${r.signal ?? ''}\n${r.stderr}`);
    const bad = results(r).filter((x) => !x.ok);
    assert.deepEqual(bad, [], `${what}: rank ${r.rank} failed checks`);
  }
  // Every rank ran the same cases and got bit-identical all-reduce results.
  const reference = results(runs[0]);
  assert.ok(reference.length > 0, `${what}: rank 0 reported nothing`);
  for (const r of runs.slice(1)) {
    assert.deepEqual(
      results(r).map((x) => [x.case, x.digest]),
      reference.map((x) => [x.case, x.digest]),
      `${what}: rank ${r.rank} differs from rank 0`,
    );
  }
}

async function runAll(worldSize: number, opts: { nodes?: number; env?: Record<string, string>; segmentBytes?: number } = {}): Promise<WorkerExit[]> {
  const dir = mkdtempSync(join(tmpdir(), 'pg-test-'));
  try {
    const args = ['--scenario', 'all', '--dir', dir, '--segment-bytes', String(opts.segmentBytes ?? 16384)];
    return await spawnGroup(WORKER, worldSize, { args, nodes: opts.nodes, env: opts.env, timeoutMs: 120_000 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

for (const worldSize of [1, 2, 3, 4, 5, 8]) {
  test(`world size ${worldSize}: allReduce (every op, odd lengths), broadcast from every root, allGather, barrier, back to back`, async () => {
    const runs = await runAll(worldSize);
    assertAllPassed(runs, `N=${worldSize}`);
    // The fixture's reference is independent of the ring; recompute one value here as well: the
    // first element of the float64 sum over 1009 elements is the sum of the ranks' first inputs.
    const n = worldSize;
    const lengths = [...new Set([0, 1, Math.max(0, n - 1), n + 1, 1009, 65537])];
    const caseId = lengths.indexOf(1009) * 8 + 5; // Float64Array, op sum (cases count from 1)
    const got = results(runs[0]).find((x) => x.case === 'allReduce sum Float64Array[1009]');
    const want = Array.from({ length: n }, (_, r) => inputFor(r, caseId, 1009)[0]).reduce((a, b) => a + b, 0);
    assert.ok(got?.first !== undefined && got.first !== null && Math.abs(got.first - want) <= 1e-9 * n * 50, `first element ${got?.first}, want ${want}`);
  });
}

test('ranks on different nodes talk over tcp, with a run secret', async () => {
  assertAllPassed(await runAll(4, { nodes: 2, env: { ROSEDIST_SECRET: 's3cret' }, segmentBytes: 4096 }), 'N=4 on 2 nodes');
});

test('the stream data transport (ROSEDIST_DATA_TRANSPORT=stream): every collective, on one node and across two with a secret', async () => {
  assertAllPassed(await runAll(3, { env: { ROSEDIST_DATA_TRANSPORT: 'stream' } }), 'N=3 stream');
  assertAllPassed(
    await runAll(4, { nodes: 2, env: { ROSEDIST_DATA_TRANSPORT: 'stream', ROSEDIST_SECRET: 's3cret' }, segmentBytes: 4096 }),
    'N=4 stream on 2 nodes',
  );
});

function stderrOf(runs: WorkerExit[], ranks: number[]): string[] {
  return ranks.map((r) => runs[r].stderr);
}

test('a rank calling another collective: every rank fails with both collectives named', async () => {
  const runs = await spawnGroup(WORKER, 3, { args: ['--scenario', 'mismatch', '--collective-timeout', '60000'], timeoutMs: 60_000 });
  for (const r of runs) {
    assert.equal(r.code, 1, `rank ${r.rank}: ${r.stderr}`);
    assert.match(r.stderr, /ERROR collective mismatch: rank \d called #2 \w+\(.*\) but rank \d called #2 \w+\(.*\)/);
    assert.match(r.stderr, /#2 broadcast\(root 0, float32\[10\]\)/);
    assert.match(r.stderr, /#2 allReduce\(sum, float32\[10\]\)/);
  }
});

test('a missing rank: the others fail the rendezvous naming it and the address', async () => {
  const runs = await spawnGroup(WORKER, 4, { args: ['--absent-rank', '2', '--rendezvous-timeout', '1500'], timeoutMs: 60_000 });
  assert.equal(runs[2].code, 0);
  for (const err of stderrOf(runs, [0, 1, 3])) {
    assert.match(err, /ERROR rendezvous timed out after 1\.5 s at tcp:\/\/127\.0\.0\.1:\d+: rank 2 of 4 did not arrive/);
  }
});

test('a missing rank 0: the others name rank 0 and the address', async () => {
  const runs = await spawnGroup(WORKER, 3, { args: ['--absent-rank', '0', '--rendezvous-timeout', '1000'], timeoutMs: 60_000 });
  for (const err of stderrOf(runs, [1, 2])) {
    assert.match(err, /ERROR rendezvous timed out after 1 s at tcp:\/\/127\.0\.0\.1:\d+: rank 0 did not answer/);
  }
});

/** Run `fn` with a private TMPDIR for the workers: a killed rank cannot remove its socket files. */
async function withTmp<T>(fn: (env: Record<string, string>) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'pg-tmp-'));
  try {
    return await fn({ TMPDIR: dir });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('a rank that dies mid-collective: the others fail at once (lost connection), naming the op, its sequence number and that rank', async () => {
  // The collective timeout is long: the failure must come from the lost connection, not from it.
  const args = ['--scenario', 'die', '--die-rank', '1', '--collective-timeout', '120000'];
  const runs = await withTmp((env) => spawnGroup(WORKER, 3, { args, env, timeoutMs: 90_000 }));
  assert.equal(runs[1].signal, 'SIGKILL');
  for (const r of [runs[0], runs[2]]) {
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /#4 allReduce\(sum, float32\[4194304\]\) on rank \d stalled after its connection (from|to) rank 1 closed/);
    assert.match(r.stderr, /did not take part: 1 on 127\.0\.0\.1, node \S+ \(no answer/);
  }
  // The same over the stream data transport, whose lost connection is seen the same way.
  const streamed = await withTmp((env) => spawnGroup(WORKER, 3, { args, env: { ...env, ROSEDIST_DATA_TRANSPORT: 'stream' }, timeoutMs: 90_000 }));
  for (const r of [streamed[0], streamed[2]]) {
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /#4 allReduce\(sum, float32\[4194304\]\) on rank \d stalled after its connection (from|to) rank 1 closed/);
  }
});

test('a bad ROSEDIST_DATA_TRANSPORT stops every rank with one line naming it', async () => {
  const runs = await runAll(2, { env: { ROSEDIST_DATA_TRANSPORT: 'carrier-pigeon' } });
  for (const r of runs) {
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /ROSEDIST_DATA_TRANSPORT=carrier-pigeon is not a data transport/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
});

test('a stopped rank (SIGSTOP): the others time out naming the op, its sequence number and that rank', async () => {
  const args = ['--scenario', 'stop', '--die-rank', '2', '--collective-timeout', '2000'];
  const runs = await withTmp((env) => spawnGroup(WORKER, 3, { args, env, timeoutMs: 60_000 }));
  assert.equal(runs[2].signal, 'SIGKILL', 'the watchdog ended the stopped rank');
  for (const r of [runs[0], runs[1]]) {
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /#4 allReduce\(sum, float32\[4194304\]\) on rank \d timed out after 2 s; ranks that did not take part: 2 on 127\.0\.0\.1, node \S+ \(no answer/,
    );
  }
});

test('a collective timeout past 2^31 ms means "never": a rank 2 s late is waited for (issue 13, #4)', async () => {
  // 10,000,000 s: Node's setTimeout would overflow and fire after 1 ms, failing the collective at once.
  const args = ['--scenario', 'late', '--die-rank', '1', '--seconds', '2', '--collective-timeout', '10000000000'];
  const runs = await spawnGroup(WORKER, 2, { args, timeoutMs: 60_000 });
  for (const r of runs) {
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /timed out|TimeoutOverflowWarning/);
    assert.deepEqual(results(r), [{ case: 'late allReduce', ok: true }]);
  }
});

/** Wait until something listens on 127.0.0.1:port. */
async function listening(port: number): Promise<void> {
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Attack the master port: raw garbage, then ZeroMQ clients without and with a wrong secret. */
async function intrude(port: number): Promise<void> {
  await listening(port);
  // ZeroMQ drops the connection once it sees the garbage (or not, when the bytes still look
  // like a ZMTP/1.0 greeting): either way this attacker is done after a moment.
  await new Promise<void>((resolve) => {
    const s = connect(port, '127.0.0.1', () => s.end(Buffer.from('GET / HTTP/1.0\r\n\r\n\xff\xfe garbage')));
    const done = (): void => {
      clearTimeout(timer);
      s.destroy();
      resolve();
    };
    const timer = setTimeout(done, 1000);
    s.on('end', done);
    s.on('close', done);
    s.on('error', done);
  });
  const hello = JSON.stringify({
    t: 'hello',
    worldSize: 3,
    runId: 'forged',
    restartCount: 0,
    peer: { rank: 1, nodeId: 'x', data: { tcp: 'tcp://127.0.0.1:1' }, control: { tcp: 'tcp://127.0.0.1:1' } },
  });
  // zeromq.js timers do not keep the event loop alive: this one does, until the attack is over.
  const keepAlive = setInterval(() => {}, 1000);
  try {
    for (const opts of [{}, { plainUsername: 'rosedist', plainPassword: 'not-the-token' }]) {
      const d = new Dealer({ ...opts, linger: 0, sendTimeout: 500, receiveTimeout: 500 });
      d.connect(`tcp://127.0.0.1:${port}`);
      await d.send(hello).catch(() => {});
      await d.receive().then(
        () => assert.fail('an intruder got an answer'),
        () => {},
      );
      d.close();
    }
  } finally {
    clearInterval(keepAlive);
  }
}

test('with a run secret, strangers at the master port are refused and logged; the run is undisturbed', async () => {
  const port = await freePort();
  const run = spawnGroup(WORKER, 3, {
    args: ['--scenario', 'auth', '--seconds', '4'],
    masterPort: port,
    env: { ROSEDIST_SECRET: 'run-secret' },
    timeoutMs: 60_000,
  });
  await intrude(port);
  const runs = await run;
  for (const r of runs) {
    assert.equal(r.code, 0, `rank ${r.rank}: ${r.stderr}`);
    assert.deepEqual(
      results(r).map((x) => x.ok),
      [true],
    );
  }
  assert.match(runs[0].stderr, /refused a connection from 127\.0\.0\.1: wrong credentials/);
  assert.match(runs[0].stderr, /dropped a connection that failed the ZeroMQ handshake/);
});

test('without a secret, a forged hello and garbage are refused or dropped and logged; the run is undisturbed', async () => {
  const port = await freePort();
  const run = spawnGroup(WORKER, 2, { args: ['--scenario', 'auth', '--seconds', '3'], masterPort: port, timeoutMs: 60_000 });
  await listening(port);
  const keepAlive = setInterval(() => {}, 1000);
  try {
    const d = new Dealer({ linger: 0, receiveTimeout: 2000 });
    d.connect(`tcp://127.0.0.1:${port}`);
    await d.send('{not json');
    await d.send(JSON.stringify({ t: 'hello', worldSize: 2, runId: 'another-run', restartCount: 0, peer: {} }));
    const [answer] = await d.receive();
    assert.match(String(answer), /"t":"reject"/);
    d.close();
  } finally {
    clearInterval(keepAlive);
  }
  const runs = await run;
  for (const r of runs) assert.equal(r.code, 0, `rank ${r.rank}: ${r.stderr}`);
  assert.match(runs[0].stderr, /dropped 1 frame\(s\) that are not one control message/);
  assert.match(runs[0].stderr, /refused a hello: (run id "another-run"|world size|the rendezvous of this group is over)/);
});
