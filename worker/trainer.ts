/**
 * The training loop of both programs, in nanoGPT's order: backend → data → model → optimizer →
 * resume or start → loop (step, evaluate, checkpoint). train_minimal runs it with a world of one;
 * train_ddp with the ZeroMQ group. Distribution shows up where this file and the two it runs call
 * a collective (every rank calls each, in the same order; ddp.ts, zero.ts, numerics.ts):
 *   at start   1 rootDecides (--profile path check), 2 allGatherJson (every rank's backend),
 *              then train_start.ts: 3 restoreCheckpoint (--resume), 4 syncParams;
 *   per step   train_step.ts: 5 averageGradients (--zero 1: averageGradientShards, then
 *              6 ShardedAdamW.gatherParams), 7 checkStep;
 *   now and then 8 evaluate's all-reduce, 9 saveCheckpoint (with --zero 1 after
 *              10 ShardedAdamW.consolidate);
 *   at the end 11 writeProfile (--profile).
 * With --tensor-parallel-size K the world is a dp × tp mesh (comm/mesh.ts, made at start, before
 * 3): the model is this rank's shards (model/tp_gpt.ts: each train step and eval batch is a
 * collective of the TP group), 8 runs over the DP group and 9 after gathering the shards over the
 * TP group (saveTensorParallel); train_start.ts and train_step.ts say what changes in 3–7.
 *
 * Dropout seeds are a function of (seed, step, micro-step, rank), the data order of (seed, epoch):
 * a resumed run repeats an uninterrupted one exactly.
 *
 * Observability: rank 0 shows progress (observe/progress.ts: a bar on a TTY, plain lines otherwise) and
 * appends one metrics line per evaluation; with --profile every rank times its step phases
 * (observe/profiler.ts; sequential on the loop's one thread) and rank 0 writes the merged trace at the end.
 */
import type { WorkerEnv } from '../shared/env.js';
import { logFileFailure, quietConsole, type Logger } from '../shared/logging.js';
import type { MetricsRecord } from '../shared/metrics.js';
import { allGatherJson, type ProcessGroup } from './comm/process_group.js';
import { gptConfigOf, tensorParallelSizeOf, type TrainConfig } from './config.js';
import { createMesh, describeMesh, type Mesh } from './comm/mesh.js';
import { TensorParallelGPT } from './model/tp_gpt.js';
import { saveTensorParallel } from './tensor_parallel.js';
import type { TokenDataset } from './data/dataset.js';
import { loadDataset } from './data/index.js';
import { DistributedSampler, ShardStream } from './data/sampler.js';
import { checkReplicas, rootDecides } from './ddp.js';
import { evaluate } from './evaluate.js';
import { formatEvalLine, MetricsLog } from './observe/metrics_log.js';
import { GPT } from './model/gpt.js';
import { checkTracePath, gatherEvents, mergeTraces, peakRssMb, Profiler, writeTrace } from './observe/profiler.js';
import { createProgress, RateMeter } from './observe/progress.js';
import { checkpointImage, saveCheckpoint } from './checkpoint.js';
import { initBackend, wasmHeapBytes, type BackendInfo } from './tf.js';
import { checkMemory, memoryLine } from './memory.js';
import { checkFiniteState, SkipStreak } from './numerics.js';
import { TestHooks } from './test_hooks.js';
import { startTraining, type Model } from './train_start.js';
import { TrainStep } from './train_step.js';

export interface TrainRun {
  readonly cfg: TrainConfig;
  readonly env: WorkerEnv;
  readonly pg: ProcessGroup;
  /** Rank 0's logger writes the log file; the others reach the console with warnings only. */
  readonly logger: Logger;
  /** The all-reduce's topology, for the log header (comm/hierarchical.ts TopologyDecision.describe); undefined: not logged. */
  readonly topology?: string;
}

export interface TrainResult {
  /** The step training ended at. */
  readonly step: number;
  /** The evaluations of this attempt (the same on every rank). */
  readonly metrics: readonly MetricsRecord[];
}

function header(run: TrainRun, started: Date, backends: readonly BackendInfo[], dataset: TokenDataset, model: Model, mesh: Mesh): void {
  const { cfg, pg, env, logger } = run;
  logger.info(`${cfg.program} started ${started.toISOString()}: world size ${pg.worldSize}, run ${env.runId}`);
  backends.forEach((b, rank) => {
    logger.info(`rank ${rank}: backend ${b.name}, device ${b.device}${b.fallbackReason ? ` (fallback: ${b.fallbackReason})` : ''}`);
  });
  logger.info(`dataset: ${dataset.description}`);
  if (mesh.tpSize > 1) logger.info(describeMesh(mesh));
  if (run.topology !== undefined) logger.info(run.topology);
  const c = model.config;
  logger.info(
    `model: GPT, ${(model instanceof TensorParallelGPT ? model.denseParams : model.numParams).toLocaleString('en-US')} parameters ` +
      (model instanceof TensorParallelGPT ? `(${model.numParams.toLocaleString('en-US')} per rank) ` : '') +
      `(${c.nLayers} layers, ${c.nHeads} heads, d_model ${c.dModel}, d_ff ${c.dFf}, vocab ${c.vocabSize}, ${c.maxPositionEmbeddings} positions)`,
  );
  // The arguments as resolved for this run: amp is off whatever was asked (the line after says why).
  logger.info(`arguments: ${JSON.stringify({ ...cfg, amp: false })}`);
  logger.info(`amp: false — tfjs has no float16 training; running float32${cfg.amp ? ' (--amp, the default, is ignored; --no-amp says so)' : ''}`);
}

export async function train(run: TrainRun): Promise<TrainResult> {
  const { cfg, pg } = run;
  const started = new Date();
  const t0 = performance.now();
  // A bad --profile path fails now, not after the whole run.
  const profilePath = cfg.profile;
  if (profilePath !== null) await rootDecides(pg, () => checkTracePath(profilePath).then(() => null));
  const profiler = new Profiler(pg.rank, profilePath !== null);
  const backend = await initBackend(cfg.backend);
  // A config that cannot fit stops here, on every rank alike, before anything big is allocated.
  const memory = checkMemory(cfg, backend.name, run.env.localWorldSize);
  // Every rank's backend, with the reason for any fallback, goes into rank 0's header.
  const backends = await allGatherJson(pg, backend);

  const dataset = await loadDataset(cfg.dataset, {
    seqLen: cfg.seqLen,
    seed: cfg.seed,
    vocabSize: cfg.vocabSize,
    dataDir: cfg.dataDir,
    tokenizer: cfg.tokenizer,
  });
  // dp × tp (comm/mesh.ts); tp 1: the world is the DP group, the dense model.
  const mesh = await createMesh(pg, tensorParallelSizeOf(cfg, pg.worldSize));
  const model: Model = mesh.tpSize > 1 ? new TensorParallelGPT(gptConfigOf(cfg), cfg.seed, mesh.tp) : new GPT(gptConfigOf(cfg), cfg.seed);
  let result: TrainResult;
  try {
    header(run, started, backends, dataset, model, mesh);
    if (mesh.tpSize > 1 && run.env.localWorldSize % mesh.tpSize !== 0) {
      run.logger.warn(
        `--tensor-parallel-size ${mesh.tpSize} does not divide the ${run.env.localWorldSize} workers per node: some TP groups span nodes (slow: they all-reduce 4 times per block)`,
      );
    }
    result = await loop(run, { t0, backendName: backend.name, dataset, model, profiler, mesh });
  } finally {
    model.dispose();
  }
  // Only a run that got here has a trace worth writing; every rank takes part.
  if (profilePath !== null) await writeProfile(run, profiler, profilePath);
  run.logger.info(memoryLine(memory, process.resourceUsage().maxRSS * 1024, wasmHeapBytes()));
  // Lines written since the last evaluation (rank 0's file only).
  throwLogFileFailure(run.logger);
  return result;
}

interface LoopParts {
  /** performance.now() ms at the start of the attempt (for elapsed_s). */
  readonly t0: number;
  readonly backendName: string;
  readonly dataset: TokenDataset;
  readonly model: Model;
  readonly profiler: Profiler;
  readonly mesh: Mesh;
}

/** Optimizer, resume, then steps with evaluations and checkpoints; progress on rank 0. */
async function loop(run: TrainRun, { t0, backendName, dataset, model, profiler, mesh }: LoopParts): Promise<TrainResult> {
  const { cfg, pg, logger } = run;
  // Gradients, the sampler and evaluation are data-parallel: over the DP group (the world when tp is 1).
  const dp = mesh.dp;
  // Optimizer, resume or start afresh, the start-up sync (train_start.ts).
  const start = await startTraining(run, model, mesh, dataset);
  const { hyper, zero, optimizer, params } = start;
  let { step, skippedSteps, tokensSeen, trainLoss } = start;
  // trainLoss: the loss of the last optimizer step taken (checkpointed); stepLoss: that of the last step, taken or skipped (reported).
  let stepLoss = trainLoss;
  const skips = new SkipStreak(cfg.maxConsecutiveSkips);

  // TP peers read the same batches: the data is sharded over the DP group.
  const sampler = new DistributedSampler(dataset.train.length, { worldSize: dp.worldSize, rank: dp.rank, seed: cfg.seed, dropLast: cfg.dropLast });
  const stream = new ShardStream(sampler, start.samplerState);
  const metricsLog = new MetricsLog(cfg.metricsFile, pg.rank === 0);
  const metrics: MetricsRecord[] = [];
  // Rank 0's progress: a live bar on a TTY (not with a JSON console), plain lines through the
  // logger otherwise. While the bar runs, the console shows warnings only and `say` prints the
  // lines that matter above the bar; the log file gets every info line, never a redraw.
  const progress = createProgress({
    total: cfg.numSteps,
    startStep: step,
    enabled: pg.rank === 0,
    stream: process.stderr,
    bar: cfg.logFormat !== 'json',
    write: (line) => logger.info(line),
  });
  const restoreConsole = progress.mode === 'bar' ? quietConsole(logger) : () => {};
  const say = (line: string): void => {
    logger.info(line);
    if (progress.mode === 'bar') progress.log(line);
  };
  const evalAndLog = async (): Promise<MetricsRecord> => {
    const val = await evaluate(model, dataset.val, cfg.batchSize, dp);
    const record: MetricsRecord = {
      step,
      // A non-finite loss is written as null (JSON has no NaN).
      train_loss: stepLoss,
      ...(skips.lastSkipped ? { skipped: true } : {}),
      val_loss: val.loss,
      val_ppl: val.ppl,
      val_tokens: val.tokens,
      tokens_seen: tokensSeen,
      elapsed_s: (performance.now() - t0) / 1000,
      world_size: pg.worldSize,
      backend: backendName,
      run_id: run.env.runId,
    };
    metrics.push(record);
    say(formatEvalLine(record, cfg.numSteps));
    // Rank 0's files; a failed write (a full disk) stops every rank together, naming the file.
    await rootDecides(pg, () => {
      metricsLog.append(record);
      throwLogFileFailure(logger);
      return null;
    });
    return record;
  };
  try {
    if (step >= cfg.numSteps) {
      say(`the checkpoint is at step ${step}, --num-steps is ${cfg.numSteps}: nothing left to train, evaluating only`);
      profiler.setStep(step);
      await profiler.span('eval', evalAndLog);
      return { step, metrics };
    }

    const tokensPerStep = cfg.batchSize * cfg.seqLen * cfg.gradAccumSteps * dp.worldSize;
    const throughput = new RateMeter();
    const hooks = TestHooks.read();
    // The step buffer and, with --overlap, its buckets (train_step.ts).
    const trainStep = new TrainStep({ cfg, pg, mesh, logger, model, dataset, stream, params, optimizer, zero, profiler, hooks });
    while (step < cfg.numSteps) {
      // A world of one awaits nothing that is not already resolved: without a turn of the event
      // loop per step its signal handlers (SIGTERM: remove the output locks) would never run.
      await new Promise<void>((resolve) => setImmediate(resolve));
      step += 1;
      hooks.atStepStart(step, pg.rank, run.env.restartCount);
      await hooks.holdAt(step, pg.rank);
      profiler.setStep(step);
      const stepStart = performance.now();
      const { loss, nonFinite } = await trainStep.run(step);
      stepLoss = loss;
      if (nonFinite === undefined) {
        trainLoss = stepLoss;
      } else {
        skippedSteps += 1;
        if (pg.rank === 0) logger.warn(`${nonFinite}; skipped this optimizer step (--on-nonfinite skip)`);
      }
      skips.record(step, nonFinite);
      tokensSeen += tokensPerStep;
      throughput.add(tokensPerStep, (performance.now() - stepStart) / 1000);

      const last = step === cfg.numSteps;
      let valPpl: number | undefined;
      if (step % cfg.evalInterval === 0 || last) valPpl = (await profiler.span('eval', evalAndLog)).val_ppl;
      progress.update(step, { tokensPerSec: throughput.rate(), trainLoss: stepLoss, valPpl });
      if (step % cfg.checkpointInterval === 0 || last) {
        // The same decision on every rank: the weights are replicated (without ZeRO the moments too).
        const moments: Record<string, Float32Array> = zero === undefined ? { 'AdamW first moments': optimizer.m, 'AdamW second moments': optimizer.v } : {};
        checkFiniteState(step, { weights: params, ...moments });
        const base = { step, skippedSteps, params, sampler: stream.state(), worldSize: dp.worldSize, tokensSeen, trainLoss };
        // With --zero 1 the whole optimizer state is gathered to rank 0 first (a collective),
        // straight into the file image rank 0 builds beforehand (no whole copy beside it).
        const image =
          zero !== undefined && pg.rank === 0 && !(model instanceof TensorParallelGPT)
            ? checkpointImage(model.params, { ...base, optimizer: { stepCount: zero.stepCount } }, model.config, cfg, hyper)
            : undefined;
        const whole = zero === undefined ? optimizer : await zero.consolidate(image);
        const state = { ...base, optimizer: whole };
        await profiler.span('checkpoint', () =>
          model instanceof TensorParallelGPT
            ? saveTensorParallel(mesh, cfg, model, state, hyper, logger, hooks.midSave)
            : saveCheckpoint(pg, cfg, model, state, hyper, logger, hooks.midSave, image === undefined ? undefined : () => image.seal()),
        );
      }
    }
    // Every data-parallel replica must end with the same bits (a collective of 32 bytes per rank;
    // over the DP group: tensor-parallel peers hold different shards).
    const weights = await checkReplicas(dp, params);
    if (pg.rank === 0 && dp.worldSize > 1) logger.info(`replicas identical after step ${step}: weights sha256 ${weights.slice(0, 16)}`);
    return { step, metrics };
  } finally {
    progress.stop();
    restoreConsole();
  }
}

/** A failed write to the log file (rank 0's; a full disk) ends the run, naming the file. */
function throwLogFileFailure(logger: Logger): void {
  const failure = logFileFailure(logger);
  if (failure !== undefined) throw failure;
}

/** Collective, after a successful run: every rank's events to rank 0, which writes one trace. */
async function writeProfile(run: TrainRun, profiler: Profiler, path: string): Promise<void> {
  const { pg, logger } = run;
  if (profiler.dropped > 0)
    logger.warn(`profile: rank ${pg.rank} recorded its first ${profiler.events().length} events only, ${profiler.dropped} more were dropped`);
  // The peak before gathering, so that the trace's own JSON does not count.
  const peakRss = await allGatherJson(pg, peakRssMb());
  const perRank = await gatherEvents(pg, profiler.events());
  await rootDecides(pg, () => writeTrace(path, { ...mergeTraces(perRank), otherData: { peak_rss_mb: peakRss } }).then(() => null));
  const count = perRank.reduce((a, events) => a + events.length, 0);
  logger.info(`profile: ${count} step-phase events of ${pg.worldSize} rank(s) written to ${path} (open it in ui.perfetto.dev or chrome://tracing)`);
}
