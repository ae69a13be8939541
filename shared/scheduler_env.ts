/**
 * Where a process sits in its job, as Slurm's `srun` or Open MPI's `mpirun` say it. Each reader
 * takes one scheduler's variables only, checks them against each other and fails with a
 * ConfigError naming the variable; shared/env.ts decides which scheduler started the process.
 *
 * Measured on the real tools (test/fixtures/scheduler_env/ holds the captured sets):
 *   - srun: SLURM_PROCID / SLURM_LOCALID / SLURM_NODEID are rank, local rank and node index of the
 *     step; the tasks of each node are only in SLURM_STEP_TASKS_PER_NODE (`2(x2)`, `2,1`), as
 *     SLURM_NTASKS_PER_NODE is unset unless --ntasks-per-node was given; the step's hosts are in
 *     SLURM_STEP_NODELIST (`n[1-2]`), in node-id order. A batch script has SLURM_PROCID=0 but no
 *     SLURM_STEP_ID: it is not a parallel step.
 *   - mpirun (Open MPI 4.1): OMPI_COMM_WORLD_NODE_RANK is the rank *within* the node, not the
 *     node's index; the node count is OMPI_MCA_orte_num_nodes; mpirun's own address is in
 *     OMPI_MCA_orte_hnp_uri (`<id>;tcp://10.77.0.11:39147`). Under an sbatch allocation the
 *     batch step's SLURM_* variables (SLURM_PROCID=0 ...) leak into every rank.
 */
import { createHash } from 'node:crypto';
import { ConfigError } from './errors.js';
import { intVar, pick, requiredInt, type Env } from './env_vars.js';
import { expandHostlist, expandTasksPerNode } from './hostlist.js';

/** A worker's place in a job started by a scheduler. */
export interface Placement {
  readonly scheduler: 'slurm' | 'openmpi';
  readonly rank: number;
  readonly worldSize: number;
  readonly localRank: number;
  readonly localWorldSize: number;
  readonly nodeRank: number;
  readonly nnodes: number;
  /** Host of rank 0; undefined on one node, where 127.0.0.1 is right. */
  readonly masterAddr: string | undefined;
  readonly masterPort: number;
  readonly runId: string;
  /** Names this job (and step) for the secret derived from the user's key (shared/job_secret.ts). */
  readonly jobKey: string;
}

/** An srun step, seen from one of its tasks. */
export interface SlurmStep {
  readonly jobId: string;
  readonly stepId: string;
  readonly procId: number;
  readonly localId: number;
  readonly ntasks: number;
  readonly nodeId: number;
  readonly nnodes: number;
  /** Tasks on each node of the step, by node id. */
  readonly tasksPerNode: readonly number[];
  /** The variable tasksPerNode came from, and its text, for error messages. */
  readonly tasksPerNodeVar: string;
  /** First host of the step: node 0. */
  readonly firstHost: string;
  /** `slurm/<job>/<step>`: the same in every task of the step, different in any other step. */
  readonly jobKey: string;
}

/**
 * A port every process of a job computes alike, so that no one has to pick and spread it: even,
 * in [20000, 32764], so that it and the next one (the launchers' control port) sit below Linux's
 * default ephemeral range (32768-60999; every node must compute the same, so not each node's own
 * range): an outgoing connection cannot take it while the workers start (launcher/ports.ts). Two
 * jobs' pairs never overlap; two jobs on one node share a pair with odds 1 in 6383.
 * MASTER_PORT / --master-port override it.
 */
export function derivedPort(jobKey: string): number {
  const h = createHash('sha256').update(jobKey).digest().readUInt32BE(0);
  return 20000 + 2 * (h % 6383);
}

function list<T>(env: Env, names: readonly string[], parse: (text: string) => T, why: string): { value: T; name: string; text: string } {
  const found = pick(env, names);
  if (found === undefined)
    throw new ConfigError(
      `${names.join(' / ')} is not set, but ${why}`,
      'start the process with srun, or set RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR yourself',
    );
  try {
    return { value: parse(found.value), name: found.name, text: found.value };
  } catch (e) {
    throw new ConfigError(
      `environment variable ${found.name}=${JSON.stringify(found.value)} cannot be read: ${(e as Error).message}`,
      `fix or unset ${found.name}`,
    );
  }
}

/** The srun step this process is a task of; undefined outside one (no SLURM_STEP_ID, e.g. a batch script). */
export function slurmStep(env: Env): SlurmStep | undefined {
  const step = pick(env, ['SLURM_STEP_ID', 'SLURM_STEPID']);
  if (step === undefined || pick(env, ['SLURM_PROCID']) === undefined) return undefined;
  const jobId = pick(env, ['SLURM_JOB_ID', 'SLURM_JOBID'])?.value;
  if (jobId === undefined) throw new ConfigError('SLURM_STEP_ID is set but SLURM_JOB_ID is not', 'start the process with srun, or unset the SLURM_* variables');
  const why = 'this process runs in a Slurm step (SLURM_STEP_ID is set)';
  const ntasksVars = ['SLURM_STEP_NUM_TASKS', 'SLURM_NTASKS'];
  const nnodesVars = ['SLURM_STEP_NUM_NODES', 'SLURM_NNODES'];
  const ntasks = requiredInt(env, ntasksVars, 1, why);
  const nnodes = requiredInt(env, nnodesVars, 1, why);
  const procId = requiredInt(env, ['SLURM_PROCID'], 0, why);
  const localId = requiredInt(env, ['SLURM_LOCALID'], 0, why);
  const nodeId = requiredInt(env, ['SLURM_NODEID'], 0, why);
  const perNode = list(env, ['SLURM_STEP_TASKS_PER_NODE', 'SLURM_TASKS_PER_NODE'], expandTasksPerNode, why);
  const hosts = list(env, ['SLURM_STEP_NODELIST', 'SLURM_NODELIST', 'SLURM_JOB_NODELIST'], expandHostlist, why);
  const [ntasksVar, nnodesVar] = [pick(env, ntasksVars)?.name, pick(env, nnodesVars)?.name];
  const bad = (message: string): never => {
    throw new ConfigError(`the Slurm step's variables disagree: ${message}`, 'start the process with srun, or unset the SLURM_* variables');
  };
  if (procId >= ntasks) bad(`SLURM_PROCID=${procId} is not below ${ntasksVar}=${ntasks}`);
  if (nodeId >= nnodes) bad(`SLURM_NODEID=${nodeId} is not below ${nnodesVar}=${nnodes}`);
  if (perNode.value.length !== nnodes) bad(`${perNode.name}=${perNode.text} covers ${perNode.value.length} nodes, ${nnodesVar}=${nnodes}`);
  if (perNode.value.reduce((a, b) => a + b, 0) !== ntasks) bad(`${perNode.name}=${perNode.text} does not add up to ${ntasksVar}=${ntasks}`);
  if (hosts.value.length !== nnodes) bad(`${hosts.name}=${hosts.text} names ${hosts.value.length} hosts, ${nnodesVar}=${nnodes}`);
  const here = perNode.value[nodeId] ?? 0;
  if (localId >= here) bad(`SLURM_LOCALID=${localId} is not below the ${here} task(s) of node ${nodeId} in ${perNode.name}=${perNode.text}`);
  return {
    jobId,
    stepId: step.value,
    procId,
    localId,
    ntasks,
    nodeId,
    nnodes,
    tasksPerNode: perNode.value,
    tasksPerNodeVar: `${perNode.name}=${perNode.text}`,
    firstHost: hosts.value[0] as string,
    jobKey: `slurm/${jobId}/${step.value}`,
  };
}

/** Inside a Slurm job but outside any step (a batch script): the job's node count; else undefined. */
export function slurmBatchNodes(env: Env): number | undefined {
  if (pick(env, ['SLURM_JOB_ID', 'SLURM_JOBID']) === undefined || pick(env, ['SLURM_STEP_ID', 'SLURM_STEPID']) !== undefined) return undefined;
  return intVar(env, ['SLURM_JOB_NUM_NODES', 'SLURM_NNODES'], 1, 1);
}

/** Every task of an srun step is a worker. */
export function slurmPlacement(step: SlurmStep): Placement {
  return {
    scheduler: 'slurm',
    rank: step.procId,
    worldSize: step.ntasks,
    localRank: step.localId,
    localWorldSize: step.tasksPerNode[step.nodeId] as number,
    nodeRank: step.nodeId,
    nnodes: step.nnodes,
    masterAddr: step.nnodes > 1 ? step.firstHost : undefined,
    masterPort: derivedPort(step.jobKey),
    runId: `slurm-${step.jobId}.${step.stepId}`,
    jobKey: step.jobKey,
  };
}

/** mpirun's address, from `<jobid>;tcp://A[,B...]:port[;tcp6://...]`. */
function hnpHost(uri: string | undefined): string | undefined {
  return uri === undefined ? undefined : /tcp:\/\/([^,:;/]+)/.exec(uri)?.[1];
}

/** A rank started by Open MPI's mpirun; undefined when OMPI_COMM_WORLD_RANK is not set. */
export function openMpiPlacement(env: Env): Placement | undefined {
  if (pick(env, ['OMPI_COMM_WORLD_RANK']) === undefined) return undefined;
  const why = 'this process was started by mpirun (OMPI_COMM_WORLD_RANK is set)';
  const worldSize = requiredInt(env, ['OMPI_COMM_WORLD_SIZE'], 1, why);
  const rank = requiredInt(env, ['OMPI_COMM_WORLD_RANK'], 0, why);
  const localWorldSize = requiredInt(env, ['OMPI_COMM_WORLD_LOCAL_SIZE'], 1, why);
  const localRank = requiredInt(env, ['OMPI_COMM_WORLD_LOCAL_RANK'], 0, why);
  const hint = 'start the ranks with mpirun --map-by slot (consecutive ranks fill a node), the same number on every node';
  if (rank >= worldSize) throw new ConfigError(`OMPI_COMM_WORLD_RANK=${rank} is not below OMPI_COMM_WORLD_SIZE=${worldSize}`, hint);
  if (localRank >= localWorldSize)
    throw new ConfigError(`OMPI_COMM_WORLD_LOCAL_RANK=${localRank} is not below OMPI_COMM_WORLD_LOCAL_SIZE=${localWorldSize}`, hint);
  // One node when this node holds every rank; otherwise Open MPI 4 says how many nodes there are.
  const nnodes = intVar(env, ['OMPI_MCA_orte_num_nodes'], localWorldSize === worldSize ? 1 : 0, 1);
  if (nnodes === 0) {
    throw new ConfigError(
      `mpirun spread ${worldSize} ranks over several nodes, but OMPI_MCA_orte_num_nodes (Open MPI 4) does not say how many`,
      'set RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, GROUP_WORLD_SIZE, MASTER_ADDR and MASTER_PORT for each rank (mpirun -x)',
    );
  }
  // The node's index is not among Open MPI's variables: with consecutive ranks on each node and
  // the same count everywhere (mpirun's default --map-by slot), node k holds ranks k*L .. k*L+L-1.
  if (worldSize !== nnodes * localWorldSize) {
    throw new ConfigError(
      `mpirun placed ${localWorldSize} of ${worldSize} ranks on this node of ${nnodes} (OMPI_COMM_WORLD_LOCAL_SIZE=${localWorldSize}, OMPI_COMM_WORLD_SIZE=${worldSize}, OMPI_MCA_orte_num_nodes=${nnodes}): rosedist needs the same number on every node`,
      `${hint}, e.g. mpirun -np ${nnodes * localWorldSize} or --map-by ppr:${localWorldSize}:node`,
    );
  }
  if (rank % localWorldSize !== localRank) {
    throw new ConfigError(
      `mpirun did not place consecutive ranks on this node: OMPI_COMM_WORLD_RANK=${rank} is local rank ${localRank} of ${localWorldSize} (round-robin --map-by node?)`,
      hint,
    );
  }
  const jobId = pick(env, ['OMPI_MCA_ess_base_jobid', 'PMIX_NAMESPACE'])?.value ?? 'unknown';
  const uri = pick(env, ['OMPI_MCA_orte_hnp_uri'])?.value;
  const masterAddr = nnodes > 1 ? hnpHost(uri) : undefined;
  if (nnodes > 1 && masterAddr === undefined && pick(env, ['MASTER_ADDR']) === undefined) {
    throw new ConfigError(
      `mpirun spread the ranks over ${nnodes} nodes, and OMPI_MCA_orte_hnp_uri does not say where mpirun (and so rank 0) runs`,
      "set MASTER_ADDR to rank 0's host: mpirun -x MASTER_ADDR=<host> ...",
    );
  }
  const jobKey = `openmpi/${jobId}/${uri ?? ''}`;
  return {
    scheduler: 'openmpi',
    rank,
    worldSize,
    localRank,
    localWorldSize,
    nodeRank: Math.floor(rank / localWorldSize),
    nnodes,
    masterAddr,
    masterPort: derivedPort(jobKey),
    runId: `mpi-${jobId}`,
    jobKey,
  };
}
