/**
 * The blueprint of each worker of an attempt (torchrun's WorkerSpec, one per local rank): the
 * command line, the environment contract (shared/env.ts) and where its output and error file go.
 *
 * Command: launcher/program.ts's, for our .js/.ts programs, Python scripts and modules, executables.
 * Environment: the contract as torchrun sets it, so that torch's env:// rendezvous works unchanged.
 * Files: <run dir>/attempt_<n>/<rank>/{error.json,stdout.log,stderr.log}; the run dir is
 * <log-dir>/<run-id>, or <log-dir>/<run-id>_<k> when an earlier run took that name (launcher/run_dirs.ts),
 * or <a temporary directory of this launcher>/<run-id> without --log-dir.
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import { workerEnvVars, type WorkerEnv } from '../shared/env.js';
import type { LaunchConfig } from './config.js';
import { visibleDeviceFor } from './devices.js';
import { programCommand } from './program.js';
import type { Layout } from './protocol.js';
import { outputPlan, type OutputPlan } from './redirects.js';

export interface WorkerSpec {
  readonly rank: number;
  readonly localRank: number;
  readonly nodeRank: number;
  readonly nodeId: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly errorFile: string;
  readonly output: OutputPlan;
}

/** First global rank of `nodeRank`: the workers of lower nodes come first. */
export function rankOffset(layout: Layout, nodeRank: number): number {
  return layout.localWorldSizes.slice(0, nodeRank).reduce((a, b) => a + b, 0);
}

/** <run dir>/attempt_<n>/<rank> */
export function attemptDir(runDir: string, attempt: number, rank: number): string {
  return join(runDir, `attempt_${attempt}`, String(rank));
}

/**
 * The workers this node starts for `attempt`. `runDir` is the run's directory for logs and error
 * files (see above); `baseEnv` is what the workers inherit (the launcher's environment);
 * `tmpDir` the launcher's per-run directory for the workers' temporary files (undefined: theirs).
 */
export function workerSpecs(
  config: LaunchConfig,
  layout: Layout,
  attempt: number,
  runDir: string,
  baseEnv: Readonly<Record<string, string | undefined>> = process.env,
  tmpDir?: string,
  /** Restarts spent so far (elastic rounds that a joining node caused are not restarts); default `attempt`. */
  restartCount: number = attempt,
): WorkerSpec[] {
  const offset = rankOffset(layout, config.nodeRank);
  const nodeId = `${hostname()}#${config.nodeRank}`;
  const { command, args } = programCommand(config.program, config.programArgs, baseEnv);
  return Array.from({ length: config.nprocPerNode }, (_, localRank) => {
    const rank = offset + localRank;
    const dir = attemptDir(runDir, attempt, rank);
    const contract: WorkerEnv = {
      rank,
      localRank,
      worldSize: layout.worldSize,
      localWorldSize: config.nprocPerNode,
      nodeRank: config.nodeRank,
      nnodes: config.nnodes,
      masterAddr: config.masterAddr,
      masterPort: config.masterPort,
      runId: layout.runId,
      restartCount,
      maxRestarts: config.maxRestarts,
      errorFile: join(dir, 'error.json'),
      nodeId,
      secret: config.secret,
      launcherPid: process.pid,
      tmpDir,
    };
    const env: Record<string, string | undefined> = {
      ...baseEnv,
      ...workerEnvVars(contract),
      ROSEDIST_PREFIXED: '1',
    };
    // As torchrun: N > 1 workers share the cores, one thread each unless the user says otherwise;
    // a single worker keeps them all.
    if (baseEnv.OMP_NUM_THREADS === undefined && config.nprocPerNode > 1) env.OMP_NUM_THREADS = '1';
    // As torchrun (torch 1.13): NCCL reports a failed collective as an error instead of hanging.
    env.NCCL_ASYNC_ERROR_HANDLING = baseEnv.NCCL_ASYNC_ERROR_HANDLING ?? '1';
    const device = visibleDeviceFor(localRank, config.gpuCount, baseEnv.CUDA_VISIBLE_DEVICES);
    if (device !== undefined) env.CUDA_VISIBLE_DEVICES = device;
    return {
      rank,
      localRank,
      nodeRank: config.nodeRank,
      nodeId,
      command,
      args,
      env,
      errorFile: join(dir, 'error.json'),
      output: outputPlan({
        rank,
        localRank,
        redirects: config.redirects,
        tee: config.tee,
        localRanksFilter: config.localRanksFilter,
        dir: config.logDir === undefined ? undefined : dir,
      }),
    };
  });
}
