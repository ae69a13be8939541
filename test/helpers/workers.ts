/**
 * Start a worker program as N real processes on loopback, with the launcher ↔ worker environment
 * contract (shared/env.ts) written directly: no launcher involved. For integration tests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { workerEnvVars } from '../../shared/env.js';
import { packagePath, tsNodeArgs } from '../../shared/runtime.js';
import { tempDir } from './temp_dir.js';

export { freePort } from './ports.js';

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
  /** Extra variables for every worker. */
  readonly env?: Readonly<Record<string, string>>;
  readonly masterPort: number;
}

/** Run `program` (path relative to the package root, e.g. worker/train_ddp.ts) as ranks 0..worldSize-1. */
export function spawnWorkers(program: string, worldSize: number, args: readonly string[], opts: SpawnOptions): WorkerGroup {
  const runId = `test-${opts.masterPort}`;
  // As the launcher does: the group's ipc sockets in a directory of its own, removed when this
  // test process exits even if a test killed a rank (which then cannot remove its socket files).
  const tmpDir = tempDir('workers');
  const children = Array.from({ length: worldSize }, (_, rank) =>
    spawn(process.execPath, [...tsNodeArgs(), packagePath(program), ...args], {
      cwd: opts.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        ...workerEnvVars({
          rank,
          localRank: rank,
          worldSize,
          localWorldSize: worldSize,
          nodeRank: 0,
          nnodes: 1,
          masterAddr: '127.0.0.1',
          masterPort: opts.masterPort,
          runId,
          restartCount: 0,
          maxRestarts: 0,
          errorFile: undefined,
          nodeId: 'test-node',
          secret: undefined,
          launcherPid: undefined,
          tmpDir,
        }),
        ...opts.env,
      },
    }),
  );
  const exited = Promise.all(
    children.map(
      (child, rank) =>
        new Promise<WorkerExit>((resolve, reject) => {
          let stdout = '';
          let stderr = '';
          child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
          child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
          child.on('error', reject);
          child.on('close', (code, signal) => resolve({ rank, code, signal, stdout, stderr }));
        }),
    ),
  );
  const kill = (): void => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  };
  return { children, exited, kill };
}
