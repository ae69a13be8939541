/**
 * The launcher ↔ worker contract: the environment variables a worker is started with.
 *
 * The launcher builds a `WorkerEnv` per worker and turns it into variables with `workerEnvVars`;
 * a worker reads its own with `readWorkerEnv`, which fails fast (a `ConfigError` naming the
 * variable) on a malformed value. Besides our own launcher, the reader accepts what other
 * schedulers set, so that they can start our workers directly:
 *   - torchrun / torch.distributed.elastic: RANK, LOCAL_RANK, WORLD_SIZE, ..., TORCHELASTIC_*
 *   - Kubeflow's PyTorchJob: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (and PET_* for torchrun)
 *   - Slurm `srun` and Open MPI `mpirun` (shared/scheduler_env.ts reads them)
 * One of them is chosen as a whole (see `placement`); MASTER_ADDR, MASTER_PORT and ROSEDIST_SECRET
 * set by hand win over what a scheduler implies. Under srun or mpirun with several processes and
 * no ROSEDIST_SECRET, the secret is derived from the user's key and the job (shared/job_secret.ts).
 * With none of them set, a worker is a single process: rank 0 of a world of 1.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { intVar, pick, type Env } from './env_vars.js';
import { ConfigError } from './errors.js';
import { jobSecret } from './job_secret.js';
import { openMpiPlacement, slurmPlacement, slurmStep, type Placement } from './scheduler_env.js';

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

/**
 * Set by the launcher of an elastic run on the first round after a membership change, e.g.
 * "world size 4 → 2 (node n3 lost)"; rank 0 logs it with the step and checkpoint it resumed from.
 */
export const MEMBERSHIP_CHANGE_VAR = 'ROSEDIST_MEMBERSHIP_CHANGE';

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

/** A process's place in its job; a scheduler's Placement, or what our launcher or torchrun say. */
type Where = Omit<Placement, 'scheduler' | 'masterAddr' | 'runId' | 'jobKey'> & Partial<Pick<Placement, 'masterAddr' | 'runId' | 'jobKey'>>;

/** Where this process sits, from our own launcher's or torchrun's variables. */
function torchrunPlacement(env: Env): Where {
  const worldSize = intVar(env, [ENV.worldSize], 1, 1);
  const rank = intVar(env, [ENV.rank], 0, 0);
  if (rank >= worldSize) {
    throw new ConfigError(`RANK=${rank} is not below WORLD_SIZE=${worldSize}`, 'each rank must be in [0, WORLD_SIZE)');
  }
  const localWorldSize = intVar(env, [ENV.localWorldSize], worldSize, 1);
  const localRank = intVar(env, [ENV.localRank], rank % localWorldSize, 0);
  if (localRank >= localWorldSize) {
    throw new ConfigError(`LOCAL_RANK=${localRank} is not below LOCAL_WORLD_SIZE=${localWorldSize}`, 'each local rank must be in [0, LOCAL_WORLD_SIZE)');
  }
  const nnodes = intVar(env, [ENV.nnodes, 'PET_NNODES'], Math.max(1, Math.ceil(worldSize / localWorldSize)), 1);
  const nodeRank = intVar(env, [ENV.nodeRank, 'PET_NODE_RANK'], Math.floor(rank / localWorldSize), 0);
  if (nodeRank >= nnodes) {
    throw new ConfigError(
      `GROUP_RANK=${nodeRank} (the node's rank) is not below GROUP_WORLD_SIZE=${nnodes}`,
      'each node rank must be in [0, GROUP_WORLD_SIZE)',
    );
  }
  return { rank, worldSize, localRank, localWorldSize, nodeRank, nnodes, masterPort: 29500 };
}

/**
 * Who started this process decides which variables count, as a whole: mixing them goes wrong
 * (mpirun inside sbatch leaks the batch step's SLURM_PROCID=0 into every rank).
 *   RANK or WORLD_SIZE set       our launcher, torchrun, Kubeflow
 *   OMPI_COMM_WORLD_RANK set     Open MPI's mpirun (even inside a Slurm allocation)
 *   SLURM_STEP_ID set            a task of an srun step
 *   none of them                 a single process (a batch script's own process too: it is alone)
 */
function placement(env: Env): Where {
  if (pick(env, [ENV.rank, ENV.worldSize]) !== undefined) return torchrunPlacement(env);
  const found = openMpiPlacement(env) ?? fromSlurm(env);
  if (found !== undefined) return found;
  if (pick(env, ['PMI_RANK']) !== undefined) {
    throw new ConfigError(
      'PMI_RANK is set: this process was started by an MPI other than Open MPI, whose placement rosedist does not read',
      "start the workers with rosedist, srun or Open MPI's mpirun, or set RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, GROUP_WORLD_SIZE, MASTER_ADDR and MASTER_PORT",
    );
  }
  return torchrunPlacement(env);
}

function fromSlurm(env: Env): Placement | undefined {
  const step = slurmStep(env);
  return step === undefined ? undefined : slurmPlacement(step);
}

/** Parse the worker's environment. Throws ConfigError naming the variable on a bad value. */
export function readWorkerEnv(env: Env = process.env): WorkerEnv {
  const p = placement(env);
  // Set by hand (or by a job script), these win over what the scheduler implies.
  const masterPort = intVar(env, [ENV.masterPort, 'PET_MASTER_PORT'], p.masterPort, 1, 65535);
  const masterAddr = pick(env, [ENV.masterAddr, 'PET_MASTER_ADDR'])?.value ?? p.masterAddr ?? '127.0.0.1';
  // Unset: a world of one makes its own (a log file reused by several runs tells them apart by it);
  // larger worlds need one that every rank derives alike.
  const runId =
    pick(env, [ENV.runId, 'TORCHELASTIC_RUN_ID', 'PET_RUN_ID'])?.value ??
    p.runId ??
    (p.worldSize === 1 ? `local-${randomBytes(4).toString('hex')}` : `local-${masterPort}`);
  const restartCount = intVar(env, [ENV.restartCount, 'TORCHELASTIC_RESTART_COUNT'], 0, 0);
  const maxRestarts = intVar(env, [ENV.maxRestarts, 'TORCHELASTIC_MAX_RESTARTS'], 0, 0);
  const launcherPid = pick(env, [ENV.launcherPid]) ? intVar(env, [ENV.launcherPid], 0, 1) : undefined;
  // A scheduler's job of several processes authenticates its sockets with the job's derived secret.
  const given = pick(env, [ENV.secret])?.value;
  const secret = given ?? (p.jobKey !== undefined && p.worldSize > 1 ? jobSecret(env, p.jobKey) : undefined);
  return {
    rank: p.rank,
    localRank: p.localRank,
    worldSize: p.worldSize,
    localWorldSize: p.localWorldSize,
    nodeRank: p.nodeRank,
    nnodes: p.nnodes,
    masterAddr,
    masterPort,
    runId,
    restartCount,
    maxRestarts,
    errorFile: pick(env, [ENV.errorFile, 'TORCHELASTIC_ERROR_FILE'])?.value,
    nodeId: pick(env, [ENV.nodeId])?.value ?? `${hostname()}/${p.nodeRank}`,
    secret,
    launcherPid,
    tmpDir: pick(env, [ENV.tmpDir])?.value,
  };
}
