/**
 * The launcher ↔ worker contract: the environment variables a worker is started with.
 *
 * The launcher builds a `WorkerEnv` per worker and turns it into variables with `workerEnvVars`;
 * a worker reads its own with `readWorkerEnv`, which fails fast (a `ConfigError` naming the
 * variable) on a malformed value. Besides our own launcher, the reader accepts what other
 * schedulers set, so that they can start our workers directly:
 *   - torchrun / torch.distributed.elastic: RANK, LOCAL_RANK, WORLD_SIZE, ..., TORCHELASTIC_*
 *   - Kubeflow's PyTorchJob: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (and PET_* for torchrun)
 *   - Slurm `srun`: SLURM_PROCID, SLURM_LOCALID, SLURM_NTASKS, SLURM_NODEID, SLURM_NNODES, ...
 *   - Open MPI `mpirun`: OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK, ...
 * Our own names win over torchrun's, which win over Slurm's, which win over Open MPI's.
 * With none of them set, a worker is a single process: rank 0 of a world of 1.
 */
import { hostname } from 'node:os';
import { ConfigError } from './errors.js';

/** Everything a worker learns from its launcher. Read-only once parsed. */
export interface WorkerEnv {
  /** Global rank, 0 ≤ rank < worldSize. */
  readonly rank: number;
  /** Rank among the workers of this node, 0 ≤ localRank < localWorldSize. */
  readonly localRank: number;
  readonly worldSize: number;
  /** Workers on this node. */
  readonly localWorldSize: number;
  /** The node's rank (torchrun's GROUP_RANK, our `nodeRank`), 0 ≤ nodeRank < nnodes. */
  readonly nodeRank: number;
  /** Number of nodes (torchrun's GROUP_WORLD_SIZE). */
  readonly nnodes: number;
  /** Where rank 0 binds the rendezvous. */
  readonly masterAddr: string;
  readonly masterPort: number;
  readonly runId: string;
  /** How many times the launcher has restarted the group (0 on the first attempt). */
  readonly restartCount: number;
  readonly maxRestarts: number;
  /** Where the worker writes its failure as JSON (shared/error_file.ts); undefined: nowhere. */
  readonly errorFile: string | undefined;
  /** Identifies the host, so peers on the same host use ipc:// instead of tcp://. */
  readonly nodeId: string;
  /** Per-run shared secret that authenticates the run's sockets; undefined: none. */
  readonly secret: string | undefined;
  /** pid of the launcher; the worker exits when it disappears (no orphans). undefined: none. */
  readonly launcherPid: number | undefined;
  /**
   * The launcher's per-run directory for the worker's temporary files (ipc sockets), removed by
   * the launcher when the run ends, even after a worker was killed; undefined: os.tmpdir().
   */
  readonly tmpDir: string | undefined;
}

/** The variable names, in one place. */
export const ENV = {
  rank: 'RANK',
  localRank: 'LOCAL_RANK',
  worldSize: 'WORLD_SIZE',
  localWorldSize: 'LOCAL_WORLD_SIZE',
  nodeRank: 'GROUP_RANK',
  nnodes: 'GROUP_WORLD_SIZE',
  masterAddr: 'MASTER_ADDR',
  masterPort: 'MASTER_PORT',
  runId: 'ROSEDIST_RUN_ID',
  restartCount: 'ROSEDIST_RESTART_COUNT',
  maxRestarts: 'ROSEDIST_MAX_RESTARTS',
  errorFile: 'ROSEDIST_ERROR_FILE',
  nodeId: 'ROSEDIST_NODE_ID',
  secret: 'ROSEDIST_SECRET',
  launcherPid: 'ROSEDIST_LAUNCHER_PID',
  tmpDir: 'ROSEDIST_TMPDIR',
} as const satisfies Record<keyof WorkerEnv, string>;

type Env = Readonly<Record<string, string | undefined>>;

/** The variables that carry `e` to a worker (the launcher adds OMP_NUM_THREADS, CUDA_* itself). */
export function workerEnvVars(e: WorkerEnv): Record<string, string> {
  const vars: Record<string, string> = {
    [ENV.rank]: String(e.rank),
    [ENV.localRank]: String(e.localRank),
    [ENV.worldSize]: String(e.worldSize),
    [ENV.localWorldSize]: String(e.localWorldSize),
    [ENV.nodeRank]: String(e.nodeRank),
    [ENV.nnodes]: String(e.nnodes),
    [ENV.masterAddr]: e.masterAddr,
    [ENV.masterPort]: String(e.masterPort),
    [ENV.runId]: e.runId,
    [ENV.restartCount]: String(e.restartCount),
    [ENV.maxRestarts]: String(e.maxRestarts),
    [ENV.nodeId]: e.nodeId,
    // torchrun's names for the same facts, for programs written against torchrun (one role,
    // "default", holds every worker, so its ranks are the global ones).
    TORCHELASTIC_RUN_ID: e.runId,
    TORCHELASTIC_RESTART_COUNT: String(e.restartCount),
    TORCHELASTIC_MAX_RESTARTS: String(e.maxRestarts),
    ROLE_NAME: 'default',
    ROLE_RANK: String(e.rank),
    ROLE_WORLD_SIZE: String(e.worldSize),
    // No launcher-hosted store: rank 0's torch process hosts it on MASTER_PORT (torch's env://
    // would otherwise only connect to it, and wait forever).
    TORCHELASTIC_USE_AGENT_STORE: 'False',
  };
  if (e.errorFile !== undefined) {
    vars[ENV.errorFile] = e.errorFile;
    vars.TORCHELASTIC_ERROR_FILE = e.errorFile;
  }
  if (e.secret !== undefined) vars[ENV.secret] = e.secret;
  if (e.launcherPid !== undefined) vars[ENV.launcherPid] = String(e.launcherPid);
  if (e.tmpDir !== undefined) vars[ENV.tmpDir] = e.tmpDir;
  return vars;
}

/** First defined value among `names`, with the name it came from. */
function pick(env: Env, names: readonly string[]): { name: string; value: string } | undefined {
  for (const name of names) {
    const value = env[name];
    if (value !== undefined && value !== '') return { name, value };
  }
  return undefined;
}

function int(env: Env, names: readonly string[], fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const found = pick(env, names);
  if (found === undefined) return fallback;
  const n = Number(found.value);
  if (!/^-?\d+$/.test(found.value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new ConfigError(
      `environment variable ${found.name}=${JSON.stringify(found.value)} is not an integer in [${min}, ${max}]`,
      `set ${found.name} to a valid value, or unset it`,
    );
  }
  return n;
}

/** Parse the worker's environment. Throws ConfigError naming the variable on a bad value. */
export function readWorkerEnv(env: Env = process.env): WorkerEnv {
  const worldSize = int(env, [ENV.worldSize, 'SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE', 'PMI_SIZE'], 1, 1);
  const rank = int(env, [ENV.rank, 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK', 'PMI_RANK'], 0, 0);
  if (rank >= worldSize) {
    throw new ConfigError(`RANK=${rank} is not below WORLD_SIZE=${worldSize}`, 'each rank must be in [0, WORLD_SIZE)');
  }
  const localWorldSize = int(
    env,
    [ENV.localWorldSize, 'SLURM_NTASKS_PER_NODE', 'OMPI_COMM_WORLD_LOCAL_SIZE'],
    worldSize,
    1,
  );
  const localRank = int(env, [ENV.localRank, 'SLURM_LOCALID', 'OMPI_COMM_WORLD_LOCAL_RANK'], rank % localWorldSize, 0);
  if (localRank >= localWorldSize) {
    throw new ConfigError(
      `LOCAL_RANK=${localRank} is not below LOCAL_WORLD_SIZE=${localWorldSize}`,
      'each local rank must be in [0, LOCAL_WORLD_SIZE)',
    );
  }
  const nnodes = int(
    env,
    [ENV.nnodes, 'PET_NNODES', 'SLURM_NNODES', 'SLURM_JOB_NUM_NODES'],
    Math.max(1, Math.ceil(worldSize / localWorldSize)),
    1,
  );
  const nodeRank = int(
    env,
    [ENV.nodeRank, 'PET_NODE_RANK', 'SLURM_NODEID', 'OMPI_COMM_WORLD_NODE_RANK'],
    Math.floor(rank / localWorldSize),
    0,
  );
  const masterPort = int(env, [ENV.masterPort, 'PET_MASTER_PORT'], 29500, 1, 65535);
  const masterAddr = pick(env, [ENV.masterAddr, 'PET_MASTER_ADDR'])?.value ?? '127.0.0.1';
  const runId =
    pick(env, [ENV.runId, 'TORCHELASTIC_RUN_ID', 'PET_RUN_ID', 'SLURM_JOB_ID'])?.value ?? `local-${masterPort}`;
  const restartCount = int(env, [ENV.restartCount, 'TORCHELASTIC_RESTART_COUNT'], 0, 0);
  const maxRestarts = int(env, [ENV.maxRestarts, 'TORCHELASTIC_MAX_RESTARTS'], 0, 0);
  const launcherPid = pick(env, [ENV.launcherPid]) ? int(env, [ENV.launcherPid], 0, 1) : undefined;
  return {
    rank,
    localRank,
    worldSize,
    localWorldSize,
    nodeRank,
    nnodes,
    masterAddr,
    masterPort,
    runId,
    restartCount,
    maxRestarts,
    errorFile: pick(env, [ENV.errorFile, 'TORCHELASTIC_ERROR_FILE'])?.value,
    nodeId: pick(env, [ENV.nodeId])?.value ?? `${hostname()}/${nodeRank}`,
    secret: pick(env, [ENV.secret])?.value,
    launcherPid,
    tmpDir: pick(env, [ENV.tmpDir])?.value,
  };
}
