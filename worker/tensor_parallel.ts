/**
 * What the training loop does differently under tensor parallelism (--tensor-parallel-size > 1),
 * kept here so that the loop (trainer.ts, train_start.ts, train_step.ts) only branches on it:
 *   - start: every rank's shards are put together into the whole model (all-gather over its TP
 *     group), rank 0 of the world overwrites them from the checkpoint on --resume, the whole
 *     model is broadcast from rank 0 and checked identical on every rank (ddp.ts syncParams: the
 *     replicated parameters are then the same on every TP peer), and each rank keeps its cut;
 *     the optimizer's moments are cut the same way;
 *   - checkpoints: the shards of the parameters and of both moments are gathered over the TP group
 *     and written as whole weights under the dense names (checkpoint.ts), so a checkpoint moves
 *     freely between dense, TP and dp × tp runs of any size.
 * The sampler's "world" is the DP group (TP peers read the same batch): a checkpoint records the
 * DP size as its world_size, which is what its sampler position is relative to.
 */
import type { Logger } from '../shared/logging.js';
import type { Mesh } from './comm/mesh.js';
import type { ProcessGroup } from './comm/process_group.js';
import { restoreCheckpoint, saveCheckpoint, type MutableOptimizer, type RestoredSummary, type TrainState } from './checkpoint.js';
import type { TrainConfig } from './config.js';
import { syncParams } from './ddp.js';
import type { TensorParallelGPT } from './model/tp_gpt.js';
import { denseFromLocals, localFromDense } from './model/tp_shard.js';
import type { AdamWConfig } from './optim.js';
import type { GradBuffer } from './grad_buffer.js';
import { firstNonFinite } from './numerics.js';

/** The whole model from every TP rank's flat shards (a collective of the TP group). */
async function gatherDense(tp: ProcessGroup, model: TensorParallelGPT, local: Float32Array): Promise<Float32Array> {
  const dense = new Float32Array(model.denseParams);
  denseFromLocals(model.plan, await tp.allGather(local), dense);
  return dense;
}

/**
 * Resume (with cfg.resume) and start-up sync under tensor parallelism: fills `params` and the
 * optimizer with this rank's cut. A collective of the world.
 */
export async function startTensorParallel(
  mesh: Mesh,
  cfg: TrainConfig,
  model: TensorParallelGPT,
  params: Float32Array,
  optimizer: MutableOptimizer,
  logger: Logger,
): Promise<RestoredSummary | undefined> {
  const dense = await gatherDense(mesh.tp, model, params);
  const layout = model.plan.map((p) => p.spec);
  const moments = { m: new Float32Array(model.denseParams), v: new Float32Array(model.denseParams), stepCount: 0 };
  const restored = cfg.resume ? await restoreCheckpoint(mesh.world, cfg, layout, dense, moments, logger) : undefined;
  await syncParams(mesh.world, dense);
  localFromDense(model.plan, mesh.tpSize, mesh.tpRank, dense, params);
  localFromDense(model.plan, mesh.tpSize, mesh.tpRank, moments.m, optimizer.m);
  localFromDense(model.plan, mesh.tpSize, mesh.tpRank, moments.v, optimizer.v);
  optimizer.stepCount = moments.stepCount;
  return restored;
}

/** Save whole weights and moments (gathered over the TP group); a collective of the world. */
export async function saveTensorParallel(
  mesh: Mesh,
  cfg: TrainConfig,
  model: TensorParallelGPT,
  state: TrainState,
  hyper: AdamWConfig,
  logger: Logger,
  midWrite?: () => void,
): Promise<void> {
  const params = await gatherDense(mesh.tp, model, state.params);
  const m = await gatherDense(mesh.tp, model, state.optimizer.m);
  const v = await gatherDense(mesh.tp, model, state.optimizer.v);
  const whole = { config: model.config, params: model.plan.map((p) => p.spec) };
  await saveCheckpoint(mesh.world, cfg, whole, { ...state, params, optimizer: { stepCount: state.optimizer.stepCount, m, v } }, hyper, logger, midWrite);
}

/**
 * After the DP all-reduce: make a non-finite value on any TP peer non-finite on all of them (in
 * its first gradient: the loss stays the step's own, which a dense run logs for a skipped step
 * too), so that every rank takes the same path through numerics.ts checkStep (a collective only
 * when something is non-finite). One 4-byte all-reduce over the TP group.
 */
export async function shareNonFinite(tp: ProcessGroup, gb: GradBuffer): Promise<void> {
  const bad = firstNonFinite(gb.flat) >= 0 ? 1 : 0;
  const flag = new Float32Array([bad]);
  await tp.allReduce(flag, 'max');
  if (flag[0] > 0 && bad === 0) gb.grads[0] = Number.NaN;
}
