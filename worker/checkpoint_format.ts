/**
 * The checkpoint file image: ONE safetensors file, readable by any safetensors reader and by
 * PyTorch (rosellm's parameter names, nn.Linear's [out, in] layout).
 *
 * Format "rosedist-checkpoint/2" (written since issue 12):
 *   tensors      every model parameter under its own name, in PyTorch's layout: linear weights
 *                [out, in] (the model holds them [in, out], so they are transposed on the way),
 *                the rest as held; then "optimizer.m" and "optimizer.v": AdamW's moments, flat
 *                [numParams], the concatenation of each parameter's moments in the same layout
 *                (what torch's exp_avg / exp_avg_sq would be, flattened in state_dict order);
 *   __metadata__ format       "rosedist-checkpoint/2"
 *                model_config JSON GPTConfig (the shape fields are checked on resume)
 *                train_config JSON of the resolved TrainConfig (data settings are checked on resume)
 *                step, skipped_steps, world_size, tokens_seen   decimal integers
 *                train_loss   the last step's train loss (JSON number)
 *                sampler      JSON SamplerState {epoch, position} of the ranks that wrote it
 *                optimizer    JSON {stepCount, lr, beta1, beta2, eps, weightDecay}
 *                sha256       hex SHA-256 of the WHOLE file with these 64 digits written as '0'
 * Cross-checks beyond the checksum: optimizer.stepCount + skipped_steps = step.
 *
 * Also read: format "rosedist-checkpoint/1" (linear weights [in, out]; its sha256 covers the data
 * section only), and weights-only files as PyTorch writes them (`save_file(model.state_dict())`:
 * no metadata, or {"format": "pt"}): every parameter by name in PyTorch's layout, nothing else.
 */
import { createHash } from 'node:crypto';
import { FileError } from '../shared/errors.js';
import type { SamplerState } from './data/sampler.js';
import type { GPTConfig } from './model/gpt.js';
import { numel } from './model/params.js';
import type { AdamWConfig } from './optim.js';
import { decodeSafetensors, encodeSafetensorsFilled, type FilledTensor, type NamedTensor } from './safetensors.js';

export const CHECKPOINT_FORMAT = 'rosedist-checkpoint/2';
export const CHECKPOINT_FORMAT_V1 = 'rosedist-checkpoint/1';

/** Names and shapes (as held in memory) of the model's parameters, in flat order (GPT.params fits). */
export type ParamLayout = readonly {
  readonly name: string;
  readonly shape: readonly number[];
  /** A linear weight: held [in, out], stored [out, in]. */
  readonly linear?: boolean;
}[];

export interface OptimizerState {
  readonly stepCount: number;
  /** AdamW first and second moments, flat [numParams], in memory order. */
  readonly m: Float32Array;
  readonly v: Float32Array;
}

/** A run's state at the end of an optimizer step. */
export interface TrainState {
  /** Optimizer steps done, skipped ones included. */
  readonly step: number;
  /** Steps whose update was skipped (--on-nonfinite skip): optimizer.stepCount = step - skippedSteps. */
  readonly skippedSteps: number;
  /** Flat parameters [numParams], in layout order, as held in memory. */
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
  /** 'rosedist': a full checkpoint; 'weights': weights only (e.g. from PyTorch), the rest fresh. */
  readonly source: 'rosedist' | 'weights';
  readonly modelConfig: GPTConfig | null;
  readonly trainConfig: Readonly<Record<string, unknown>> | null;
}

/** A [rows, cols] row-major matrix as [cols, rows]. */
function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c] as number;
  return out;
}

/** One parameter's values (memory order) into `out` in file order (linear weights transposed). */
function toFileOrder(part: Float32Array, p: ParamLayout[number], out: Float32Array): void {
  if (!p.linear) {
    out.set(part);
    return;
  }
  const [rows, cols] = p.shape as [number, number];
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = part[r * cols + c] as number;
}

/** The shape a parameter has in the file. */
const fileShape = (p: ParamLayout[number]): number[] => (p.linear ? [p.shape[1] as number, p.shape[0] as number] : [...p.shape]);

/**
 * Flat values [numParams] between memory order and file order: per parameter, linear weights
 * transposed ([in, out] → [out, in] with `toFile`, back without). Returns per-parameter arrays.
 */
function relayout(flat: Float32Array, layout: ParamLayout, toFile: boolean): Float32Array[] {
  let offset = 0;
  return layout.map((p) => {
    const n = numel(p.shape);
    const part = flat.subarray(offset, offset + n);
    offset += n;
    if (!p.linear) return part;
    const [rows, cols] = toFile ? p.shape : fileShape(p);
    return transpose(part, rows as number, cols as number);
  });
}

function concat(parts: readonly Float32Array[], n: number): Float32Array {
  const out = new Float32Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const SHA_PLACEHOLDER = '0'.repeat(64);
const shaField = (hex: string): Uint8Array => new TextEncoder().encode(`"sha256":"${hex}"`);

/** Where the header's `"sha256":"<hex>"` starts; -1 unless it occurs exactly once in the header. */
function shaFieldAt(image: Uint8Array, hex: string): number {
  const headerEnd = 8 + Number(Buffer.from(image.buffer, image.byteOffset, 8).readBigUInt64LE(0));
  const header = Buffer.from(image.buffer, image.byteOffset, Math.min(headerEnd, image.length));
  const at = header.indexOf(shaField(hex));
  return at >= 0 && header.lastIndexOf(shaField(hex)) === at ? at : -1;
}

/** SHA-256 of the whole image with the recorded digest (at `at`) read as the placeholder. */
function wholeFileSha(image: Uint8Array, at: number): string {
  const digestAt = at + shaField('').length - 1;
  return createHash('sha256')
    .update(image.subarray(0, digestAt))
    .update(SHA_PLACEHOLDER)
    .update(image.subarray(digestAt + 64))
    .digest('hex');
}

/** The file image of a checkpoint (format 2). */
export function encodeCheckpoint(layout: ParamLayout, state: TrainState, modelConfig: GPTConfig, trainConfig: object, hyper: AdamWConfig): Uint8Array {
  const image = checkpointImage(layout, state, modelConfig, trainConfig, hyper);
  image.m.set(state.optimizer.m);
  image.v.set(state.optimizer.v);
  return image.seal();
}

/**
 * A checkpoint's file image built in place, before its optimizer moments are known: the weights
 * (`state.params`) are written at once, `m` and `v` are the image's own regions for the moments,
 * to be filled in memory order (ZeRO gathers every rank's shard straight into them, zero.ts), and
 * `seal()` puts them in file order and writes the checksum. No copy of the weights or of the
 * moments exists beside the image (copies used to double the memory a checkpoint takes on rank 0).
 */
export interface CheckpointImage {
  readonly m: Float32Array;
  readonly v: Float32Array;
  /** The finished image (call once, after filling m and v). */
  seal(): Uint8Array;
}

export function checkpointImage(
  layout: ParamLayout,
  state: Omit<TrainState, 'optimizer'> & { readonly optimizer: { readonly stepCount: number } },
  modelConfig: GPTConfig,
  trainConfig: object,
  hyper: AdamWConfig,
): CheckpointImage {
  const n = layout.reduce((a, p) => a + numel(p.shape), 0);
  if (n !== state.params.length) throw new RangeError(`checkpoint: layout has ${n} values, params ${state.params.length}`);
  const starts = layout.reduce<number[]>((a, p) => [...a, a[a.length - 1]! + numel(p.shape)], [0]);
  const tensors: FilledTensor[] = layout.map((p, i) => ({
    name: p.name,
    shape: fileShape(p),
    fill: (out) => toFileOrder(state.params.subarray(starts[i], starts[i + 1]), p, out),
  }));
  const regions: Float32Array[] = [];
  for (const name of ['optimizer.m', 'optimizer.v']) tensors.push({ name, shape: [n], fill: (out) => void regions.push(out) });
  const image = encodeSafetensorsFilled(tensors, {
    format: CHECKPOINT_FORMAT,
    model_config: JSON.stringify(modelConfig),
    train_config: JSON.stringify(trainConfig),
    step: String(state.step),
    skipped_steps: String(state.skippedSteps),
    world_size: String(state.worldSize),
    tokens_seen: String(state.tokensSeen),
    train_loss: JSON.stringify(state.trainLoss),
    sampler: JSON.stringify(state.sampler),
    optimizer: JSON.stringify({ stepCount: state.optimizer.stepCount, ...hyper }),
    sha256: SHA_PLACEHOLDER,
  });
  const [m, v] = regions as [Float32Array, Float32Array];
  let sealed = false;
  return {
    m,
    v,
    seal: () => {
      if (sealed) throw new Error('internal: checkpoint image sealed twice');
      sealed = true;
      // Memory order to file order in place, one linear weight at a time (a scratch of its size).
      const largest = Math.max(0, ...layout.map((p) => (p.linear ? numel(p.shape) : 0)));
      const scratch = new Float32Array(largest);
      for (const region of [m, v]) {
        layout.forEach((p, i) => {
          if (!p.linear) return;
          const part = region.subarray(starts[i], starts[i + 1]);
          const copy = scratch.subarray(0, part.length);
          copy.set(part);
          toFileOrder(copy, p, part);
        });
      }
      const at = shaFieldAt(image, SHA_PLACEHOLDER);
      if (at < 0) throw new Error('internal: the checksum field is not in the header exactly once');
      const digest = wholeFileSha(image, at);
      image.set(new TextEncoder().encode(digest), at + shaField('').length - 1);
      return image;
    },
  };
}

const damaged = (path: string, what: string): FileError => new FileError(`checkpoint ${path} ${what}`, 'the file is damaged; delete it or restore a good copy');

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

const isCount = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

function metaInt(meta: Readonly<Record<string, string>>, key: string, path: string): number {
  const n = metaJson(meta, key, path);
  if (!isCount(n)) throw new FileError(`checkpoint ${path}: "${key}" is not a count`, 'the file was not written by rosedist or is damaged');
  return n;
}

/** The model's parameters from the file's tensors, in memory order; extra tensors refused unless `allowed`. */
function readParams(tensors: readonly NamedTensor[], layout: ParamLayout, path: string, allowed: ReadonlySet<string>, fileLayout: boolean): Float32Array {
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const known = new Set(layout.map((p) => p.name));
  const extra = tensors.filter((t) => !known.has(t.name) && !allowed.has(t.name)).map((t) => t.name);
  if (extra.length > 0) {
    throw new FileError(
      `checkpoint ${path} holds tensors this model does not have: ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', ...' : ''}`,
      'the checkpoint was written for another model; pass its model options, or start afresh without --resume',
    );
  }
  const parts = layout.map((p) => {
    const t = byName.get(p.name);
    const want = fileLayout ? fileShape(p) : [...p.shape];
    if (t === undefined || t.shape.join(',') !== want.join(',')) {
      throw new FileError(
        `checkpoint ${path}: parameter ${p.name} ${t ? `has shape [${t.shape.join(', ')}], expected [${want.join(', ')}]` : 'is missing'}`,
        'the checkpoint was written for another model; pass its model options, or start afresh without --resume',
      );
    }
    return t.data;
  });
  const n = layout.reduce((a, p) => a + numel(p.shape), 0);
  return fileLayout ? concat(relayout(concat(parts, n), layout, false), n) : concat(parts, n);
}

/**
 * Decode and check a checkpoint image of any format above. FileError when it is damaged (bad
 * header, truncated, checksum, inconsistent counts, missing tensor) or of another program.
 * `checkConfigs` sees a full checkpoint's configs once the checksum holds, before any tensor is
 * matched (so that a different model is named by its flags, not by a tensor shape).
 */
export function decodeCheckpoint(
  bytes: Uint8Array,
  path: string,
  layout: ParamLayout,
  checkConfigs: (model: GPTConfig, train: Readonly<Record<string, unknown>>) => void = () => {},
): Checkpoint {
  const file = decodeSafetensors(bytes, `checkpoint ${path}`);
  const meta = file.metadata;
  const n = layout.reduce((a, p) => a + numel(p.shape), 0);
  if ((meta.format === undefined || meta.format === 'pt') && meta.sha256 === undefined) {
    return {
      source: 'weights',
      params: readParams(file.tensors, layout, path, new Set(), true),
      step: 0,
      skippedSteps: 0,
      optimizer: { stepCount: 0, m: new Float32Array(n), v: new Float32Array(n) },
      sampler: { epoch: 0, position: 0 },
      worldSize: 0,
      tokensSeen: 0,
      trainLoss: Number.NaN,
      modelConfig: null,
      trainConfig: null,
    };
  }
  const v2 = meta.format === CHECKPOINT_FORMAT;
  if (!v2 && meta.format !== CHECKPOINT_FORMAT_V1) {
    throw new FileError(
      `checkpoint ${path} is not a rosedist checkpoint (format ${JSON.stringify(meta.format ?? null)})`,
      `expected ${CHECKPOINT_FORMAT} (or ${CHECKPOINT_FORMAT_V1}, or a PyTorch state_dict saved with safetensors)`,
    );
  }
  const recorded = meta.sha256 ?? '';
  let sha: string;
  if (v2) {
    const at = /^[0-9a-f]{64}$/.test(recorded) ? shaFieldAt(bytes, recorded) : -1;
    if (at < 0) throw damaged(path, 'has no valid "sha256" in its header');
    sha = wholeFileSha(bytes, at);
  } else {
    sha = createHash('sha256').update(file.dataSection).digest('hex');
  }
  if (sha !== recorded) throw damaged(path, `fails its checksum (sha256 ${sha}, recorded ${recorded})`);
  const modelConfig = metaJson(meta, 'model_config', path) as GPTConfig;
  const trainConfig = metaJson(meta, 'train_config', path) as Record<string, unknown>;
  checkConfigs(modelConfig, trainConfig);

  const params = readParams(file.tensors, layout, path, new Set(['optimizer.m', 'optimizer.v']), v2);
  const moment = (name: string): Float32Array => {
    const t = file.tensors.find((x) => x.name === name);
    if (t === undefined || t.data.length !== n) throw damaged(path, `has no valid ${name} (missing, or of the wrong length)`);
    return v2 ? concat(relayout(t.data, layout, false), n) : t.data;
  };
  const opt = metaJson(meta, 'optimizer', path) as { stepCount?: unknown } | null;
  const sampler = metaJson(meta, 'sampler', path) as Partial<SamplerState> | null;
  // JSON writes a NaN loss (no step taken yet, or all skipped) as null.
  const trainLoss = metaJson(meta, 'train_loss', path) ?? Number.NaN;
  if (typeof trainLoss !== 'number' || !isCount(opt?.stepCount) || !isCount(sampler?.epoch) || !isCount(sampler?.position)) {
    throw damaged(path, 'has a malformed optimizer or sampler state');
  }
  const step = metaInt(meta, 'step', path);
  const skippedSteps = v2 ? metaInt(meta, 'skipped_steps', path) : step - opt.stepCount;
  if (opt.stepCount + skippedSteps !== step || skippedSteps < 0) {
    throw damaged(path, `is inconsistent: step ${step}, but its optimizer took ${opt.stepCount} steps${v2 ? ` and ${skippedSteps} were skipped` : ''}`);
  }
  return {
    source: 'rosedist',
    step,
    skippedSteps,
    worldSize: metaInt(meta, 'world_size', path),
    tokensSeen: metaInt(meta, 'tokens_seen', path),
    trainLoss,
    params,
    optimizer: { stepCount: opt.stepCount, m: moment('optimizer.m'), v: moment('optimizer.v') },
    sampler: { epoch: sampler.epoch, position: sampler.position },
    modelConfig,
    trainConfig,
  };
}
