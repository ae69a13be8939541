import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent } from '../../launcher/agent.js';
import { parseCli } from '../../launcher/cli.js';
import { resolveConfig } from '../../launcher/config.js';
import type { LauncherEvent } from '../../launcher/events.js';
import { failureOf } from '../../launcher/failures.js';
import type { ProcessContext, Worker, WorkerState } from '../../launcher/process_context.js';
import { localRendezvous } from '../../launcher/coordinator_client.js';
import type { WorkerSpec } from '../../launcher/worker_spec.js';
import { FIXTURE } from '../helpers/launcher_run.js';

/**
 * An in-memory worker: the test ends it; signals end it too unless it ignores SIGTERM. `watched`
 * resolves when the agent first looks at its state, i.e. once the agent is watching the group.
 */
class FakeWorker implements Worker {
  readonly pid: number;
  readonly signals: NodeJS.Signals[] = [];
  private current: WorkerState = { kind: 'running' };
  private resolveExit: () => void = () => {};
  readonly exited = new Promise<void>((r) => (this.resolveExit = r));
  readonly finished = this.exited;
  private resolveWatched: () => void = () => {};
  readonly watched = new Promise<void>((r) => (this.resolveWatched = r));
  constructor(
    readonly spec: WorkerSpec,
    private readonly ignoresSigterm: boolean,
  ) {
    this.pid = 1000 + spec.rank;
  }
  state(): WorkerState {
    this.resolveWatched();
    return this.current;
  }
  exit(code: number): void {
    if (this.current.kind !== 'running') return;
    this.current =
      code === 0
        ? { kind: 'succeeded' }
        : { kind: 'failed', failure: failureOf({ ...this.spec, pid: this.pid, errorFile: undefined }, code, null, Date.now()) };
    this.resolveExit();
  }
  treeAlive(): boolean {
    return this.current.kind === 'running';
  }
  signal(signal: NodeJS.Signals): void {
    if (this.current.kind !== 'running') return;
    this.signals.push(signal);
    if (signal === 'SIGTERM' && this.ignoresSigterm) return;
    this.current = { kind: 'stopped' };
    this.resolveExit();
  }
}

/**
 * A context whose `script(attempt, workers)` plays each attempt once the agent watches its
 * workers. `watching` resolves when the agent first watches the workers of attempt 0.
 */
function fakeContext(script: (attempt: number, workers: FakeWorker[]) => void, ignoresSigterm = false) {
  const attempts: FakeWorker[][] = [];
  let resolveWatching: () => void = () => {};
  const watching = new Promise<void>((r) => (resolveWatching = r));
  const context: ProcessContext = {
    start(specs) {
      const workers = specs.map((s) => new FakeWorker(s, ignoresSigterm));
      const attempt = attempts.push(workers) - 1;
      void Promise.all(workers.map((w) => w.watched)).then(() => {
        resolveWatching();
        script(attempt, workers);
      });
      return workers;
    },
  };
  return { context, attempts, watching };
}

async function agentFor(argv: string[], context: ProcessContext) {
  const host = { countGpus: () => 0, canBind: async () => true, freePort: async () => 41000, cpus: () => 2 };
  const parsed = await resolveConfig(parseCli([...argv, FIXTURE], {}), {}, host);
  const config = { ...parsed, monitorIntervalMs: 5, stopGraceMs: 100 };
  const events: LauncherEvent[] = [];
  const agent = new Agent({
    config,
    rendezvous: localRendezvous({ runId: config.runId, worldSize: config.nprocPerNode, localWorldSizes: [config.nprocPerNode] }, config.maxRestarts),
    context,
    emit: (e) => events.push(e),
    fileBase: '/nonexistent',
  });
  return { agent, events };
}

test('a failed worker stops the group, which restarts with the next restart count, then succeeds', async () => {
  const { context, attempts } = fakeContext((attempt, ws) => {
    if (attempt === 0) ws[1]?.exit(3);
    else ws.forEach((w) => w.exit(0));
  });
  const { agent, events } = await agentFor(['--nproc-per-node', '2', '--max-restarts', '3'], context);
  const result = await agent.run();
  assert.equal(result.exitCode, 0);
  assert.equal(attempts.length, 2);
  assert.deepEqual(attempts[0]?.[0]?.signals, ['SIGTERM'], 'the healthy rank was stopped');
  assert.deepEqual(
    attempts[1]?.map((w) => w.spec.env.ROSEDIST_RESTART_COUNT),
    ['1', '1'],
  );
  const restart = events.find((e) => e.kind === 'restarting');
  assert.ok(restart?.kind === 'restarting' && restart.cause?.rank === 1 && restart.attempt === 1);
  assert.equal(events.at(-1)?.kind, 'succeeded');
});

test('out of restarts: exit code 1 and a summary naming the failed rank', async () => {
  const { context, attempts } = fakeContext((_a, ws) => ws[0]?.exit(7));
  const { agent, events } = await agentFor(['--nproc-per-node', '2', '--max-restarts', '1'], context);
  const result = await agent.run();
  assert.equal(result.exitCode, 1);
  assert.equal(attempts.length, 2);
  assert.deepEqual(
    result.failures.map((f) => [f.rank, f.exitCode]),
    [[0, 7]],
  );
  const summary = events.find((e) => e.kind === 'summary');
  assert.ok(summary?.kind === 'summary');
  assert.match(summary.text, /failed on attempt 1/);
  assert.match(summary.text, /rank 0 \(local rank 0, .*\) exited with code 7/);
});

test('a worker that ignores SIGTERM gets SIGKILL after the grace period', async () => {
  const { context, attempts } = fakeContext((_a, ws) => ws[1]?.exit(3), true);
  const { agent, events } = await agentFor(['--nproc-per-node', '2'], context);
  assert.equal((await agent.run()).exitCode, 1);
  assert.deepEqual(attempts[0]?.[0]?.signals, ['SIGTERM', 'SIGKILL']);
  assert.ok(events.some((e) => e.kind === 'killing'));
});

test('a signal to the launcher is forwarded; the agent ends with 128 + its number and no restart', async () => {
  const { context, attempts, watching } = fakeContext(() => {});
  const { agent } = await agentFor(['--nproc-per-node', '2', '--max-restarts', '3'], context);
  const running = agent.run();
  await watching;
  agent.interrupt('SIGINT');
  assert.equal((await running).exitCode, 130);
  assert.equal(attempts.length, 1);
  assert.deepEqual(
    attempts[0]?.map((w) => w.signals),
    [['SIGINT'], ['SIGINT']],
  );
});
