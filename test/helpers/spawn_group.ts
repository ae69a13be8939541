/**
 * Start a group of worker processes on this machine as a launcher would, and collect what they
 * did. For integration tests (process group, train_ddp):
 *
 *   const results = await spawnGroup(packagePath('test/fixtures/pg_worker.ts'), 4, { args: ['--scenario', 'sum'] });
 *   for (const r of results) assert.equal(r.code, 0, r.stderr);
 *
 * Each rank runs `node <tsx loader> program ...args` with the worker environment contract set:
 * RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, GROUP_WORLD_SIZE, MASTER_ADDR=127.0.0.1,
 * MASTER_PORT (a free port), ROSEDIST_NODE_ID, plus `env` (which wins). With `nodes` > 1 the ranks
 * are split into that many pretend nodes (contiguous blocks, distinct node ids), so that peers on
 * different "nodes" talk over tcp:// even on one machine.
 *
 * Resolves when every process has exited, with one entry per rank in rank order. After
 * `timeoutMs` (default 60 s) every process still running is killed with SIGKILL (its entry
 * then has signal 'SIGKILL'), so a hung group never hangs the test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { tsNodeArgs } from '../../shared/runtime.js';
import { freePort } from './ports.js';

export interface SpawnGroupOptions {
  /** Arguments after the program, the same for every rank. */
  args?: string[];
  /** Extra environment variables for every rank (override the contract's). */
  env?: Record<string, string>;
  /** Kill every rank still running after this long (ms); default 60 000. */
  timeoutMs?: number;
  /** Pretend nodes the ranks are split into; default 1. */
  nodes?: number;
}

export interface RankResult {
  rank: number;
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** The contract's variables for `rank` of `worldSize` ranks on `nodes` pretend nodes. */
export function groupEnv(rank: number, worldSize: number, nodes: number, masterPort: number): Record<string, string> {
  const localWorldSize = Math.ceil(worldSize / nodes);
  const nodeRank = Math.floor(rank / localWorldSize);
  return {
    RANK: String(rank),
    LOCAL_RANK: String(rank % localWorldSize),
    WORLD_SIZE: String(worldSize),
    LOCAL_WORLD_SIZE: String(localWorldSize),
    GROUP_RANK: String(nodeRank),
    GROUP_WORLD_SIZE: String(Math.ceil(worldSize / localWorldSize)),
    MASTER_ADDR: '127.0.0.1',
    MASTER_PORT: String(masterPort),
    ROSEDIST_NODE_ID: `test-node-${nodeRank}`,
  };
}

export async function spawnGroup(program: string, worldSize: number, opts: SpawnGroupOptions = {}): Promise<RankResult[]> {
  const nodes = opts.nodes ?? 1;
  if (!Number.isInteger(worldSize) || worldSize < 1) throw new RangeError(`worldSize must be a positive integer, got ${worldSize}`);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > worldSize) throw new RangeError(`nodes must be in [1, ${worldSize}], got ${nodes}`);
  const masterPort = await freePort();
  const children: ChildProcess[] = [];
  const done = Array.from({ length: worldSize }, (_, rank) => {
    const child = spawn(process.execPath, [...tsNodeArgs(), program, ...(opts.args ?? [])], {
      env: { ...process.env, ...groupEnv(rank, worldSize, nodes, masterPort), ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    return new Promise<RankResult>((resolve) => {
      child.on('error', (e) => {
        stderr += `spawn failed: ${e.message}\n`;
      });
      child.on('close', (code, signal) => resolve({ rank, code, signal, stdout, stderr }));
    });
  });
  const timer = setTimeout(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }, opts.timeoutMs ?? 60_000);
  try {
    return await Promise.all(done);
  } finally {
    clearTimeout(timer);
  }
}
