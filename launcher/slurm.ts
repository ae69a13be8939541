/**
 * A launcher started by Slurm forms ONE job from what Slurm says, as torchrun does under
 * `srun --ntasks-per-node=1 torchrun ...`: each node's launcher is one task of the srun step, and
 * the options not given come from the step:
 *   --nnodes        SLURM_STEP_NUM_NODES
 *   --node-rank     SLURM_NODEID
 *   --master-addr   first host of SLURM_STEP_NODELIST (node 0)
 *   --master-port   derived from the job and step ids (shared/scheduler_env.ts derivedPort)
 *   --run-id        slurm-<job id>.<step id>
 *   the secret      derived from the user's key and the job (shared/job_secret.ts)
 * Without this, `srun rosedist` on two nodes ran two independent jobs, each its own master on
 * 127.0.0.1, both writing the same log and checkpoint. Two launchers of one step on one node
 * would do the same, and a launcher in the batch script of a multi-node job would use one node
 * of several: both are refused with what to do instead.
 */
import { ConfigError } from '../shared/errors.js';
import { pick, type Env } from '../shared/env_vars.js';
import { derivedPort, slurmBatchNodes, slurmStep } from '../shared/scheduler_env.js';
import type { Given, OptionName } from './cli.js';

type Options = Readonly<Partial<Record<OptionName, Given>>>;

export interface SchedulerDefaults {
  /** The options, with what Slurm says filled in where they were not given. */
  readonly options: Options;
  /** Names the job for its derived secret (multi-node only); undefined: not under Slurm. */
  readonly jobKey: string | undefined;
}

/** Fill in the launcher options that an srun step implies; refuse layouts that cannot form one job. */
export function slurmDefaults(given: Options, env: Env): SchedulerDefaults {
  const none = { options: given, jobKey: undefined };
  // Started by another launcher or by mpirun: Slurm's variables here are leftovers of the batch step.
  if (pick(env, ['RANK', 'WORLD_SIZE', 'OMPI_COMM_WORLD_RANK']) !== undefined) return none;
  const batchNodes = slurmBatchNodes(env);
  if (batchNodes !== undefined && batchNodes > 1 && given.nnodes === undefined) {
    throw new ConfigError(
      `rosedist runs outside any srun step of a ${batchNodes}-node Slurm job (SLURM_JOB_NUM_NODES=${batchNodes}: a batch script or salloc shell), where it would use this node only`,
      'start one launcher per node: srun --ntasks-per-node=1 npx rosedist ... (scripts/slurm/train_ddp.sbatch), or pass --nnodes 1 to use this node alone',
    );
  }
  const step = slurmStep(env);
  if (step === undefined) return none;
  const options: Partial<Record<OptionName, Given>> = { ...given };
  if (options['node-rank'] === undefined) {
    const here = step.tasksPerNode[step.nodeId] ?? 0;
    if (here > 1) {
      throw new ConfigError(
        `srun started ${here} rosedist launchers on node ${step.nodeId} (${step.tasksPerNodeVar}); each would start its own workers`,
        'start one launcher per node (srun --ntasks-per-node=1; it starts --nproc-per-node workers), or let srun start the workers themselves without rosedist',
      );
    }
    options['node-rank'] = { value: String(step.nodeId), from: 'SLURM_NODEID' };
  }
  options.nnodes ??= { value: String(step.nnodes), from: 'SLURM_STEP_NUM_NODES' };
  if (step.nnodes === 1) return { options, jobKey: undefined };
  options['master-addr'] ??= { value: step.firstHost, from: 'SLURM_STEP_NODELIST' };
  options['master-port'] ??= {
    value: String(derivedPort(step.jobKey)),
    from: `the port derived from SLURM_JOB_ID=${step.jobId}, SLURM_STEP_ID=${step.stepId}`,
  };
  options['run-id'] ??= { value: `slurm-${step.jobId}.${step.stepId}`, from: 'SLURM_JOB_ID' };
  return { options, jobKey: step.jobKey };
}
