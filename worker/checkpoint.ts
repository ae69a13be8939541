/**
 * Checkpoints: everything a run needs to continue, in ONE safetensors file, written atomically.
 *
 * Layout (so that other tools read the weights with any safetensors reader):
 *   tensors      every model parameter under its own name and shape (GPT.params order), then
 *                "optimizer.m" and "optimizer.v": AdamW's moments, flat [numParams], same order;
 *   __metadata__ format       "rosedist-checkpoint/1"
 *                model_config JSON GPTConfig (the shape fields are checked on resume)
 *                train_config JSON of the resolved TrainConfig
 *                step, world_size, tokens_seen   decimal integers
 *                train_loss   the last step's train loss (JSON number)
 *                sampler      JSON SamplerState {epoch, position} of the ranks that wrote it
 *                optimizer    JSON {stepCount, lr, beta1, beta2, eps, weightDecay}
 *                sha256       hex SHA-256 of the data section (every tensor byte)
 * One file keeps weights and state consistent without a second rename; the checksum catches a
 * damaged data section, the header's own checks (JSON, offsets, sizes) a damaged header.
 * Dropout seeds derive from (seed, step, micro-step, rank) and the data order from (seed, epoch),
 * so `step` and `sampler` are the whole RNG state.
 *
 * Atomic write: a temporary file beside the target, fsync, rename over the target, fsync the
 * directory. A crash mid-write leaves the previous checkpoint as it was.
 *
 * Collectively (`saveCheckpoint`, `restoreCheckpoint`): rank 0 alone touches the file and every
 * rank learns the outcome (ddp.ts rootDecides), which is also the barrier: no rank goes on before
 * rank 0 has finished writing, and an error there (disk full, damaged file) stops every rank.
 * On resume rank 0 reads the file and broadcasts the optimizer state; the parameters follow in
 * the start-up broadcast that every run does (syncParams), so nodes need no shared file system.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { writeFileAtomicSync } from '../shared/atomic_file.js';
import { ConfigError, FileError } from '../shared/errors.js';
import type { Logger } from '../shared/logging.js';
import type { ProcessGroup } from './comm/process_group.js';
import { flagOf, MODEL_SHAPE_FIELDS, type TrainConfig } from './config.js';
import type { SamplerState } from './data/sampler.js';
import type { GPTConfig } from './model/gpt.js';
import type { AdamWConfig } from './optim.js';
import { rootDecides } from './ddp.js';
import { decodeSafetensors, encodeSafetensors, type NamedTensor } from './safetensors.js';

export const CHECKPOINT_FORMAT = 'rosedist-checkpoint/1';

/** Names and shapes of the model's parameters, in flat order (GPT.params fits). */
export type ParamLayout = readonly { readonly name: string; readonly shape: readonly number[] }[];

export interface OptimizerState {
  readonly stepCount: number;
  /** AdamW first and second moments, flat [numParams]. */
  readonly m: Float32Array;
  readonly v: Float32Array;
}

/** A run's state at the end of an optimizer step. */
export interface TrainState {
  /** Optimizer steps done. */
  readonly step: number;
  /** Flat parameters [numParams], in layout order. */
  readonly params: Float32Array;
  readonly optimizer: OptimizerState;
  readonly sampler: SamplerState;
  /** The world size that wrote the state (the sampler state is per rank of that world). */
  readonly worldSize: number;
  /** Training tokens processed, all ranks together. */
  readonly tokensSeen: number;
  /** Train loss of the last step (mean over ranks), reported by an evaluation right after resuming. */
  readonly trainLoss: number;
}

export interface Checkpoint extends TrainState {
  readonly modelConfig: GPTConfig;
  readonly trainConfig: Readonly<Record<string, unknown>>;
}

const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** The file image of a checkpoint. */
export function encodeCheckpoint(layout: ParamLayout, state: TrainState, modelConfig: GPTConfig, cfg: TrainConfig, hyper: AdamWConfig): Uint8Array {
  const tensors: NamedTensor[] = [];
  let offset = 0;
  for (const p of layout) {
    const n = numel(p.shape);
    tensors.push({ name: p.name, shape: p.shape, data: state.params.subarray(offset, offset + n) });
    offset += n;
  }
  if (offset !== state.params.length) throw new RangeError(`checkpoint: layout has ${offset} values, params ${state.params.length}`);
  tensors.push({ name: 'optimizer.m', shape: [offset], data: state.optimizer.m });
  tensors.push({ name: 'optimizer.v', shape: [offset], data: state.optimizer.v });
  const metadata = {
    format: CHECKPOINT_FORMAT,
    model_config: JSON.stringify(modelConfig),
    train_config: JSON.stringify(cfg),
    step: String(state.step),
    world_size: String(state.worldSize),
    tokens_seen: String(state.tokensSeen),
    train_loss: JSON.stringify(state.trainLoss),
    sampler: JSON.stringify(state.sampler),
    optimizer: JSON.stringify({ stepCount: state.optimizer.stepCount, ...hyper }),
    sha256: '',
  };
  // The checksum covers the data section: the tensors' bytes, in order.
  const hash = createHash('sha256');
  for (const t of tensors) hash.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  metadata.sha256 = hash.digest('hex');
  return encodeSafetensors(tensors, metadata);
}

/** What to do about a checkpoint that cannot be written. */
export const CHECKPOINT_WRITE_HINT =
  'pass a --checkpoint-path in a writable directory with free space (the previous checkpoint there, if any, is unchanged), ' +
  'or --tolerate-checkpoint-errors to train on without saving';

/** Write the checkpoint file image atomically and durably; a FileError naming the path on failure. */
export function writeCheckpointFile(path: string, bytes: Uint8Array): void {
  try {
    writeFileAtomicSync(path, bytes, true);
  } catch (e) {
    throw new FileError(`cannot write checkpoint ${path}: ${(e as Error).message}`, CHECKPOINT_WRITE_HINT);
  }
}

function metaJson(meta: Readonly<Record<string, string>>, key: string, path: string): unknown {
  const text = meta[key];
  const problem = new FileError(`checkpoint ${path} has no valid "${key}" in its metadata`, 'the file was not written by rosedist or is damaged');
  if (text === undefined) throw problem;
  try {
    return JSON.parse(text);
  } catch {
    throw problem;
  }
}

function metaInt(meta: Readonly<Record<string, string>>, key: string, path: string): number {
  const n = metaJson(meta, key, path);
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    throw new FileError(`checkpoint ${path}: "${key}" is not a count`, 'the file was not written by rosedist or is damaged');
  }
  return n;
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

/**
 * Read and check a checkpoint: undefined when `path` does not exist; FileError when it is damaged
 * (bad header, truncated, checksum mismatch, missing tensor); ConfigError when its model differs.
 */
export function readCheckpoint(path: string, layout: ParamLayout, cfg: TrainConfig): Checkpoint | undefined {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new FileError(`cannot read checkpoint ${path}: ${(e as Error).message}`, 'check the path and its permissions');
  }
  const file = decodeSafetensors(bytes, `checkpoint ${path}`);
  const meta = file.metadata;
  if (meta.format !== CHECKPOINT_FORMAT) {
    throw new FileError(`checkpoint ${path} is not a rosedist checkpoint (format ${JSON.stringify(meta.format ?? null)})`, `expected ${CHECKPOINT_FORMAT}`);
  }
  const sha = createHash('sha256').update(file.dataSection).digest('hex');
  if (sha !== meta.sha256) {
    throw new FileError(`checkpoint ${path} fails its checksum (sha256 ${sha}, recorded ${meta.sha256})`, 'the file is damaged; delete it or restore a good copy');
  }
  const modelConfig = metaJson(meta, 'model_config', path) as GPTConfig;
  checkModelConfig(modelConfig, cfg, path);
  const byName = new Map(file.tensors.map((t) => [t.name, t]));
  const numParams = layout.reduce((a, p) => a + numel(p.shape), 0);
  const params = new Float32Array(numParams);
  let offset = 0;
  for (const p of layout) {
    const t = byName.get(p.name);
    if (t === undefined || t.shape.join(',') !== p.shape.join(',')) {
      throw new FileError(
        `checkpoint ${path}: parameter ${p.name} ${t ? `has shape [${t.shape.join(', ')}], expected [${p.shape.join(', ')}]` : 'is missing'}`,
        'the checkpoint was written by another model version; start afresh without --resume',
      );
    }
    params.set(t.data, offset);
    offset += t.data.length;
  }
  const moment = (name: string): Float32Array => {
    const t = byName.get(name);
    if (t === undefined || t.data.length !== numParams) throw new FileError(`checkpoint ${path}: ${name} is missing or has the wrong length`, 'the file is damaged');
    return t.data;
  };
  const opt = metaJson(meta, 'optimizer', path) as { stepCount?: unknown };
  const sampler = metaJson(meta, 'sampler', path) as Partial<SamplerState>;
  const trainLoss = metaJson(meta, 'train_loss', path);
  if (typeof trainLoss !== 'number' || typeof opt?.stepCount !== 'number' || typeof sampler?.epoch !== 'number' || typeof sampler.position !== 'number') {
    throw new FileError(`checkpoint ${path}: optimizer or sampler state is malformed`, 'the file is damaged');
  }
  return {
    step: metaInt(meta, 'step', path),
    worldSize: metaInt(meta, 'world_size', path),
    tokensSeen: metaInt(meta, 'tokens_seen', path),
    trainLoss,
    params,
    optimizer: { stepCount: opt.stepCount, m: moment('optimizer.m'), v: moment('optimizer.v') },
    sampler: { epoch: sampler.epoch, position: sampler.position },
    modelConfig,
    trainConfig: metaJson(meta, 'train_config', path) as Record<string, unknown>,
  };
}

/** What every rank learns from a restored checkpoint (the arrays travel separately). */
export interface RestoredSummary {
  readonly step: number;
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
  const summary = await rootDecides(pg, (): RestoredSummary | null => {
    loaded = readCheckpoint(path, layout, cfg);
    if (loaded === undefined) return null;
    const { step, worldSize, tokensSeen, trainLoss, sampler } = loaded;
    return { step, worldSize, tokensSeen, trainLoss, sampler, stepCount: loaded.optimizer.stepCount };
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
 */
export async function saveCheckpoint(
  pg: ProcessGroup,
  cfg: TrainConfig,
  model: { readonly config: GPTConfig; readonly params: ParamLayout },
  state: TrainState,
  hyper: AdamWConfig,
  logger: Logger,
): Promise<void> {
  const problem = await rootDecides(pg, (): string | null => {
    try {
      writeCheckpointFile(cfg.checkpointPath, encodeCheckpoint(model.params, state, model.config, cfg, hyper));
      return null;
    } catch (e) {
      if (!cfg.tolerateCheckpointErrors || !(e instanceof FileError)) throw e;
      return e.message;
    }
  });
  if (problem === null) logger.info(`checkpoint at step ${state.step} saved to ${cfg.checkpointPath}`);
  else if (pg.rank === 0) logger.warn(`checkpoint at step ${state.step} not saved: ${problem}; training goes on (--tolerate-checkpoint-errors)`);
}
