/**
 * Checkpoints: everything a run needs to continue, in ONE safetensors file (its format:
 * checkpoint_format.ts), written atomically, checked against the run's options on resume.
 *
 * Atomic write: a temporary file beside the target (`<path>.tmp-<pid>`), fsync, rename over the
 * target, fsync the directory. A crash mid-write leaves the previous checkpoint as it was;
 * SIGINT/SIGTERM/SIGHUP during the write wait until it is complete (signals.ts), and rank 0
 * removes the temporary files of dead processes (a SIGKILL mid-write) at start.
 * Dropout seeds derive from (seed, step, micro-step, rank) and the data order from (seed, epoch),
 * so `step` and `sampler` are the whole RNG state.
 *
 * Resume compatibility: a different model (shape flags) or different data (--dataset, --seq-len,
 * --seed, --drop-last, --tokenizer of text data) is refused naming every difference; a different
 * --batch-size or --grad-accum-steps (or world size) continues with a warning, because the
 * sampler position counts samples: the same epoch order continues at the same sample.
 *
 * Collectively (`saveCheckpoint`, `restoreCheckpoint`): rank 0 alone touches the file and every
 * rank learns the outcome (ddp.ts rootDecides), which is also the barrier: no rank goes on before
 * rank 0 has finished writing, and an error there (disk full, damaged file) stops every rank.
 * On resume rank 0 reads the file and broadcasts the optimizer state; the parameters follow in
 * the start-up broadcast that every run does (syncParams), so nodes need no shared file system.
 */
import { readFileSync } from 'node:fs';
import { removeStaleTempFiles, writeFileAtomicSync } from '../shared/atomic_file.js';
import { ConfigError, FileError } from '../shared/errors.js';
import type { Logger } from '../shared/logging.js';
import type { ProcessGroup } from './comm/process_group.js';
import { flagOf, MODEL_SHAPE_FIELDS, type TrainConfig } from './config.js';
import type { SamplerState } from './data/sampler.js';
import type { GPTConfig } from './model/gpt.js';
import type { AdamWConfig } from './optim.js';
import { rootDecides } from './ddp.js';
import { decodeCheckpoint, encodeCheckpoint, type Checkpoint, type ParamLayout, type TrainState } from './checkpoint_format.js';
import { withSignalsDeferred } from './signals.js';

export {
  CHECKPOINT_FORMAT,
  checkpointImage,
  encodeCheckpoint,
  type Checkpoint,
  type OptimizerState,
  type ParamLayout,
  type TrainState,
} from './checkpoint_format.js';

/** What to do about a checkpoint that cannot be written. */
export const CHECKPOINT_WRITE_HINT =
  'pass a --checkpoint-path in a writable directory with free space (the previous checkpoint there, if any, is unchanged), ' +
  'or --tolerate-checkpoint-errors to train on without saving';

/**
 * Write the checkpoint file image atomically and durably; a FileError naming the path on failure.
 * `midWrite` runs halfway through (a test hook: a signal mid-save).
 */
export function writeCheckpointFile(path: string, bytes: Uint8Array, midWrite?: () => void): void {
  try {
    writeFileAtomicSync(path, bytes, true, midWrite);
  } catch (e) {
    throw new FileError(`cannot write checkpoint ${path}: ${(e as Error).message}`, CHECKPOINT_WRITE_HINT);
  }
}

/** Rank 0 at start: remove `<path>.tmp-<pid>` files of processes that are gone (killed mid-save). */
export function removeStaleCheckpointTemps(path: string, logger: Logger): void {
  for (const f of removeStaleTempFiles(path)) logger.warn(`removed ${f}, the temporary file of a checkpoint save that was killed before it finished`);
}

/** Throw a ConfigError listing every model shape field where `saved` and `cfg` differ. */
export function checkModelConfig(saved: GPTConfig, cfg: TrainConfig, path: string): void {
  const diffs = MODEL_SHAPE_FIELDS.filter((k) => saved[k] !== cfg[k]).map((k) => `${flagOf(k)} ${saved[k]} there, ${cfg[k]} here`);
  if (diffs.length > 0) {
    throw new ConfigError(
      `checkpoint ${path} holds a different model: ${diffs.join('; ')}`,
      'pass the same model options as the checkpoint, or another --checkpoint-path (or no --resume) to start afresh',
    );
  }
}

/** Data settings a resumed run must share: the sampler position indexes samples of this data in this order. */
const DATA_FIXED = ['dataset', 'seqLen', 'seed', 'dropLast', 'tokenizer'] as const;
/** Settings that may change: the position counts samples, so the epoch continues at the same sample. */
const DATA_SCALABLE = ['batchSize', 'gradAccumSteps'] as const;

/**
 * Compare the data settings of a checkpoint's train config with this run's: a ConfigError naming
 * every fixed setting that differs; otherwise the warnings for settings that may change.
 * (Settings the checkpoint does not record, as older ones, are not compared.)
 */
export function checkDataConfig(saved: Readonly<Record<string, unknown>>, cfg: TrainConfig, path: string): string[] {
  const differs = (k: keyof TrainConfig): boolean => k in saved && saved[k] !== cfg[k];
  const say = (k: (typeof DATA_FIXED)[number] | (typeof DATA_SCALABLE)[number]): string => `${flagOf(k)} ${String(saved[k])} there, ${String(cfg[k])} here`;
  // The toy datasets have no tokenizer: a --tokenizer there is ignored.
  const fixed = DATA_FIXED.filter((k) => differs(k) && !(k === 'tokenizer' && cfg.dataset.startsWith('toy')));
  if (fixed.length > 0) {
    throw new ConfigError(
      `checkpoint ${path} was written with other data settings: ${fixed.map(say).join('; ')}`,
      "pass the checkpoint's data options to continue it (its sampler position indexes that data), or another --checkpoint-path (or no --resume) to start afresh",
    );
  }
  const scalable = DATA_SCALABLE.filter(differs);
  if (scalable.length === 0) return [];
  return [
    `resuming checkpoint ${path} with ${scalable.map(say).join('; ')}: the data order continues at the same sample, with ${cfg.batchSize * cfg.gradAccumSteps} samples per rank per step`,
  ];
}

/**
 * Read and check a checkpoint: undefined when `path` does not exist; FileError when it is damaged
 * (bad header, truncated, checksum mismatch, inconsistent counts, missing tensor); ConfigError
 * when its model or data settings differ. `warnings`: the changed settings it accepts.
 */
export function readCheckpoint(path: string, layout: ParamLayout, cfg: TrainConfig): (Checkpoint & { readonly warnings: readonly string[] }) | undefined {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new FileError(`cannot read checkpoint ${path}: ${(e as Error).message}`, 'check the path and its permissions');
  }
  let warnings: string[] = [];
  const checkpoint = decodeCheckpoint(bytes, path, layout, (model, train) => {
    checkModelConfig(model, cfg, path);
    warnings = checkDataConfig(train, cfg, path);
  });
  return { ...checkpoint, warnings };
}

/**
 * The sampler position of a resumed checkpoint must lie within a shard of its world size (each
 * rank's shard has ceil(size / worldSize) samples, floor with --drop-last): a FileError otherwise.
 */
export function checkSamplerState(s: SamplerState, worldSize: number, trainSize: number, dropLast: boolean, path: string): void {
  const perRank = dropLast && trainSize % worldSize !== 0 ? Math.floor(trainSize / worldSize) : Math.ceil(trainSize / worldSize);
  if (s.position > perRank) {
    throw new FileError(
      `checkpoint ${path}: its sampler position ${s.position} is past the end of a shard (${perRank} samples per rank at world size ${worldSize})`,
      'the file is damaged or the dataset changed; delete it, restore a good copy, or start afresh without --resume',
    );
  }
}

/** What every rank learns from a restored checkpoint (the arrays travel separately). */
export interface RestoredSummary {
  readonly source: Checkpoint['source'];
  readonly step: number;
  readonly skippedSteps: number;
  readonly worldSize: number;
  readonly tokensSeen: number;
  readonly trainLoss: number;
  readonly sampler: SamplerState;
  readonly stepCount: number;
}

/** The optimizer as restore fills it (AdamW fits). */
export interface MutableOptimizer {
  readonly m: Float32Array;
  readonly v: Float32Array;
  stepCount: number;
}

/**
 * --resume, collectively: rank 0 reads cfg.checkpointPath into `params` (rank 0's copy only) and
 * the optimizer (every rank). Resolves undefined, after saying so, when there is no checkpoint;
 * rejects on every rank with rank 0's FileError or ConfigError.
 */
export async function restoreCheckpoint(
  pg: ProcessGroup,
  cfg: TrainConfig,
  layout: ParamLayout,
  params: Float32Array,
  optimizer: MutableOptimizer,
  logger: Logger,
): Promise<RestoredSummary | undefined> {
  const path = cfg.checkpointPath;
  let loaded: Checkpoint | undefined;
  let summary = await rootDecides(pg, (): RestoredSummary | null => {
    const read = readCheckpoint(path, layout, cfg);
    if (read === undefined) return null;
    loaded = read;
    for (const w of read.warnings) logger.warn(w);
    const { source, step, skippedSteps, tokensSeen, trainLoss, sampler } = read;
    const worldSize = source === 'weights' ? pg.worldSize : read.worldSize;
    return { source, step, skippedSteps, worldSize, tokensSeen, trainLoss, sampler, stepCount: read.optimizer.stepCount };
  });
  if (summary === null) {
    logger.info(`no checkpoint at ${path}, starting from scratch`);
    return undefined;
  }
  if (loaded !== undefined) {
    params.set(loaded.params);
    optimizer.m.set(loaded.optimizer.m);
    optimizer.v.set(loaded.optimizer.v);
  }
  optimizer.stepCount = summary.stepCount;
  // A NaN loss reaches the other ranks as JSON's null.
  if (typeof summary.trainLoss !== 'number') summary = { ...summary, trainLoss: Number.NaN };
  if (summary.source === 'weights') {
    logger.info(`loaded the model weights of ${path} (no rosedist training state in it): training starts at step 0 with a fresh optimizer`);
    return summary;
  }
  if (pg.worldSize > 1) {
    await pg.broadcast(optimizer.m, 0);
    await pg.broadcast(optimizer.v, 0);
  }
  logger.info(`resumed from ${path} at step ${summary.step}`);
  if (summary.worldSize !== pg.worldSize) {
    logger.info(
      `the checkpoint was written by world size ${summary.worldSize}, this run has world size ${pg.worldSize}: ` +
        'the data order continues in the same epoch at the same share of it',
    );
  }
  return summary;
}

/**
 * Save a checkpoint collectively (every rank calls it; rank 0 writes). A failed write rejects on
 * every rank with rank 0's FileError, or, with --tolerate-checkpoint-errors, is logged as a
 * warning (rank 0) and resolves: training goes on, the previous checkpoint stays as it was.
 * A SIGINT/SIGTERM/SIGHUP during the write takes effect once the file is complete. `image`: rank
 * 0's file image, already built (checkpoint_format.ts checkpointImage; ZeRO gathers into it),
 * instead of encoding `state`.
 */
export async function saveCheckpoint(
  pg: ProcessGroup,
  cfg: TrainConfig,
  model: { readonly config: GPTConfig; readonly params: ParamLayout },
  state: TrainState,
  hyper: AdamWConfig,
  logger: Logger,
  midWrite?: () => void,
  image?: () => Uint8Array,
): Promise<void> {
  const problem = await rootDecides(pg, () =>
    withSignalsDeferred((): string | null => {
      try {
        writeCheckpointFile(cfg.checkpointPath, image?.() ?? encodeCheckpoint(model.params, state, model.config, cfg, hyper), midWrite);
        return null;
      } catch (e) {
        if (!cfg.tolerateCheckpointErrors || !(e instanceof FileError)) throw e;
        return e.message;
      }
    }),
  );
  if (problem === null) logger.info(`checkpoint at step ${state.step} saved to ${cfg.checkpointPath}`);
  else if (pg.rank === 0) logger.warn(`checkpoint at step ${state.step} not saved: ${problem}; training goes on (--tolerate-checkpoint-errors)`);
}
