/**
 * Start a worker program as N real processes on loopback, with the launcher ↔ worker environment
 * contract (shared/env.ts) written directly: no launcher involved. For integration tests
 * (process group, train_ddp):
 *
 *   const results = await spawnGroup(packagePath('test/fixtures/pg_worker.ts'), 4, { args: ['--scenario', 'sum'] });
 *   for (const r of results) assert.equal(r.code, 0, r.stderr);
 *
 * Each rank runs `node <tsx loader> program ...args` with RANK, LOCAL_RANK, WORLD_SIZE, ...,
 * MASTER_ADDR=127.0.0.1, MASTER_PORT set, plus `env` (which wins). With `nodes` > 1 the ranks are
 * split into that many pretend nodes (contiguous blocks, distinct node ids), so that peers on
 * different "nodes" talk over tcp:// even on one machine.
 */
import type { ChildProcess } from 'node:child_process';
import { isAbsolute } from 'node:path';
import { workerEnvVars } from '../../shared/env.js';
import { packagePath, tsNodeArgs } from '../../shared/runtime.js';
import { startProcess } from '../../shared/subprocess.js';
import { freePort } from './ports.js';
import { tempDir } from './temp_dir.js';

export { freePort };

export interface WorkerExit {
  readonly rank: number;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface WorkerGroup {
  readonly children: readonly ChildProcess[];
  /** Resolves when every worker has exited, indexed by rank. */
  readonly exited: Promise<WorkerExit[]>;
  /** SIGKILL every worker still running. */
  kill(): void;
}

export interface SpawnOptions {
  readonly cwd?: string;
  /** Extra variables for every worker (override the contract's). */
  readonly env?: Readonly<Record<string, string>>;
  /** Default: a port that was free a moment ago. */
  readonly masterPort?: number;
  /** Pretend nodes the ranks are split into; default 1. */
  readonly nodes?: number;
  /** SIGKILL every worker still running after this long (ms); its entry then has signal 'SIGKILL'. */
  readonly timeoutMs?: number;
}

/**
 * Run `program` (absolute, or relative to the package root, e.g. worker/train_ddp.ts) as ranks
 * 0..worldSize-1 with the same `args`.
 */
export async function spawnWorkers(program: string, worldSize: number, args: readonly string[], opts: SpawnOptions = {}): Promise<WorkerGroup> {
  const nodes = opts.nodes ?? 1;
  if (!Number.isInteger(worldSize) || worldSize < 1) throw new RangeError(`worldSize must be a positive integer, got ${worldSize}`);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > worldSize) throw new RangeError(`nodes must be in [1, ${worldSize}], got ${nodes}`);
  const masterPort = opts.masterPort ?? (await freePort());
  const localWorldSize = Math.ceil(worldSize / nodes);
  const path = isAbsolute(program) ? program : packagePath(program);
  // As the launcher does: the group's ipc sockets in a directory of its own, removed when this
  // test process exits even if a test killed a rank (which then cannot remove its socket files).
  const tmpDir = tempDir('workers');
  const running = Array.from({ length: worldSize }, (_, rank) => {
    const nodeRank = Math.floor(rank / localWorldSize);
    const contract = workerEnvVars({
      rank,
      localRank: rank % localWorldSize,
      worldSize,
      localWorldSize,
      nodeRank,
      nnodes: Math.ceil(worldSize / localWorldSize),
      masterAddr: '127.0.0.1',
      masterPort,
      runId: `test-${masterPort}`,
      restartCount: 0,
      maxRestarts: 0,
      errorFile: undefined,
      nodeId: `test-node-${nodeRank}`,
      secret: undefined,
      launcherPid: undefined,
      tmpDir,
    });
    return startProcess(process.execPath, [...tsNodeArgs(), path, ...args], { cwd: opts.cwd, env: { ...contract, ...opts.env }, timeoutMs: opts.timeoutMs });
  });
  const children = running.map((r) => r.child);
  const exited = Promise.all(running.map(async (r, rank) => ({ rank, ...(await r.done) })));
  const kill = (): void => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  };
  return { children, exited, kill };
}

/** Run `program` as a group of `worldSize` and wait for every rank; a hung group is killed after `timeoutMs` (default 60 s). */
export async function spawnGroup(program: string, worldSize: number, opts: SpawnOptions & { args?: readonly string[] } = {}): Promise<WorkerExit[]> {
  const group = await spawnWorkers(program, worldSize, opts.args ?? [], { ...opts, timeoutMs: opts.timeoutMs ?? 60_000 });
  return group.exited;
}
