/**
 * Where a run's training starts (trainer.ts, after the model is built): the optimizer, then resume
 * from --checkpoint-path or start afresh, then the start-up sync. Its collectives, numbered as in
 * trainer.ts's list (every rank calls each, in the same order; checkpoint.ts, ddp.ts):
 *   3 restoreCheckpoint (--resume), 4 syncParams.
 * With --tensor-parallel-size K, 3 and 4 run on whole weights, then each rank keeps its cut
 * (tensor_parallel.ts startTensorParallel).
 */
import { MEMBERSHIP_CHANGE_VAR, type WorkerEnv } from '../shared/env.js';
import type { Logger } from '../shared/logging.js';
import type { ProcessGroup } from './comm/process_group.js';
import type { Mesh } from './comm/mesh.js';
import type { TrainConfig } from './config.js';
import type { TokenDataset } from './data/dataset.js';
import { rescaleSamplerState, type SamplerState } from './data/sampler.js';
import { checkSamplerState, removeStaleCheckpointTemps, restoreCheckpoint } from './checkpoint.js';
import { syncParams } from './ddp.js';
import type { GPT } from './model/gpt.js';
import { TensorParallelGPT } from './model/tp_gpt.js';
import { ADAMW_DEFAULTS, AdamW, type AdamWConfig } from './optim.js';
import { startTensorParallel } from './tensor_parallel.js';
import { ShardedAdamW } from './zero.js';

/** The dense GPT, or this rank's shards of it under tensor parallelism (tp_gpt.ts). */
export type Model = GPT | TensorParallelGPT;

/** What the start needs of the run (trainer.ts TrainRun). */
export interface StartRun {
  readonly cfg: TrainConfig;
  readonly env: WorkerEnv;
  readonly pg: ProcessGroup;
  readonly logger: Logger;
}

/** The optimizer and the counters the loop goes on from; the model already holds `params`. */
export interface TrainStart {
  readonly hyper: AdamWConfig;
  /** --zero 1: this rank's shard of AdamW's state (zero.ts); undefined otherwise. */
  readonly zero: ShardedAdamW | undefined;
  /** AdamW over the whole flat parameters; empty (unused) with --zero 1. */
  readonly optimizer: AdamW;
  /** The master copy of the weights, flat in GPT.params order; the model's variables mirror it. */
  readonly params: Float32Array;
  /** The step the checkpoint was taken at; 0 when starting afresh. */
  readonly step: number;
  /** Steps whose update --on-nonfinite skip dropped: optimizer.stepCount = step - skippedSteps. */
  readonly skippedSteps: number;
  readonly tokensSeen: number;
  /** The loss of the last optimizer step taken (checkpointed); NaN when starting afresh. */
  readonly trainLoss: number;
  /** Where this rank's shard of the data goes on, rescaled to this run's DP world size. */
  readonly samplerState: SamplerState;
}

/** Optimizer, resume or start afresh, then the start-up sync; every rank ends with the same weights. */
export async function startTraining(run: StartRun, model: Model, mesh: Mesh, dataset: TokenDataset): Promise<TrainStart> {
  const { cfg, pg, logger } = run;
  const dp = mesh.dp;
  // PyTorch's AdamW defaults (betas 0.9/0.999, eps 1e-8), as the original; lr and decay from flags.
  const hyper = { ...ADAMW_DEFAULTS, lr: cfg.lr, weightDecay: cfg.weightDecay };
  // --zero 1: this rank keeps AdamW's state for its shard of the parameters only (zero.ts).
  const zero = cfg.zero === 1 ? new ShardedAdamW(pg, model.numParams, hyper) : undefined;
  const optimizer = new AdamW(zero === undefined ? model.numParams : 0, hyper); // empty (unused) with --zero 1
  // The master copy of the weights, flat in GPT.params order; the model's variables mirror it.
  const params = zero?.params ?? new Float32Array(model.numParams);
  model.readFlat(params);

  let step = 0;
  let skippedSteps = 0;
  let tokensSeen = 0;
  let trainLoss = Number.NaN;
  let samplerState: SamplerState = { epoch: 0, position: 0 };
  if (pg.rank === 0) removeStaleCheckpointTemps(cfg.checkpointPath, logger);
  if (model instanceof TensorParallelGPT) {
    // Resume and the start-up sync on whole weights, then each rank's cut (tensor_parallel.ts;
    // --zero 1 is refused with tensor parallelism: config.ts).
    const restored = await startTensorParallel(mesh, cfg, model, params, optimizer, logger);
    if (restored) {
      ({ step, skippedSteps, tokensSeen, trainLoss } = restored);
      checkSamplerState(restored.sampler, restored.worldSize, dataset.train.length, cfg.dropLast, cfg.checkpointPath);
      samplerState = rescaleSamplerState(restored.sampler, restored.worldSize, dp.worldSize);
    }
  } else if (cfg.resume) {
    // A checkpoint holds the whole optimizer state; with --zero 1 this rank keeps its shard of it.
    const into = zero === undefined ? optimizer : { m: new Float32Array(model.numParams), v: new Float32Array(model.numParams), stepCount: 0 };
    const restored = await restoreCheckpoint(pg, cfg, model.params, params, into, logger);
    if (restored) {
      zero?.load(into);
      ({ step, skippedSteps, tokensSeen, trainLoss } = restored);
      checkSamplerState(restored.sampler, restored.worldSize, dataset.train.length, cfg.dropLast, cfg.checkpointPath);
      samplerState = rescaleSamplerState(restored.sampler, restored.worldSize, pg.worldSize);
    }
  }
  if (run.env.restartCount > 0) logger.info(attemptLine(run, step));
  const change = process.env[MEMBERSHIP_CHANGE_VAR];
  if (change !== undefined && change !== '') logger.info(membershipLine(change, cfg, step));
  if (!(model instanceof TensorParallelGPT)) await syncParams(pg, params);
  model.writeFlat(params);
  return { hyper, zero, optimizer, params, step, skippedSteps, tokensSeen, trainLoss, samplerState };
}

/** An elastic run's new round: "world size 4 → 2 (node n3 lost) at step S, resumed from checkpoint PATH". */
function membershipLine(change: string, cfg: TrainConfig, step: number): string {
  if (step > 0) return `${change} at step ${step}, resumed from checkpoint ${cfg.checkpointPath}`;
  return `${change} at step 0: ${cfg.resume ? `no checkpoint at ${cfg.checkpointPath} yet` : '--resume was not given'}, starting afresh`;
}

/** What a restarted attempt says first: which attempt, and where it continues from. */
function attemptLine(run: StartRun, step: number): string {
  const { env, cfg } = run;
  const head = `attempt ${env.restartCount} (restart ${env.restartCount} of ${env.maxRestarts})`;
  if (!cfg.resume) return `${head} starts from step 0: --resume was not given, so the work of earlier attempts is not reused`;
  if (step === 0) return `${head} starts from step 0: no checkpoint at ${cfg.checkpointPath} yet`;
  return `${head} resumed from step ${step} of checkpoint ${cfg.checkpointPath}`;
}
