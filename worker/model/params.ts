/**
 * The GPT's configuration and its parameter list: names, shapes, initial values.
 *
 * Names and order are the Python original's `state_dict()` keys (registration order of its
 * modules: token and position embeddings, then per block ln1, ln2, attn.qkv_proj, attn.out_proj,
 * mlp.fc1, mlp.fc2, then ln_f and lm_head). Shapes differ in one way: linear weights are held
 * [in, out] in memory (as tfjs Dense holds them, so the forward pass is a plain x @ W) where
 * PyTorch's nn.Linear holds [out, in]; they carry `linear: true`, and checkpoints store them
 * transposed, in PyTorch's layout (worker/checkpoint_format.ts).
 *
 * Initialisation (PyTorch's defaults would draw nn.Embedding from N(0, 1), far too large for a
 * GPT): as nanoGPT, weights of embeddings and linear layers ~ N(0, 0.02^2), biases 0, LayerNorm
 * weight 1 and bias 0. Values are drawn in JavaScript from a seeded stream per parameter, so the
 * same seed gives the same weights on every backend.
 */
import { ConfigError } from '../../shared/errors.js';
import { fillNormal, streamSeed } from '../rng.js';

export interface GPTConfig {
  readonly vocabSize: number; // V
  readonly maxPositionEmbeddings: number; // longest sequence T the model accepts
  readonly nLayers: number;
  readonly nHeads: number; // H; dModel must be a multiple of it
  readonly dModel: number; // C
  readonly dFf: number; // hidden width of the MLP
  readonly dropout: number; // probability in [0, 1)
}

export type ParamInit = 'normal' | 'zeros' | 'ones';

export interface ParamSpec {
  readonly name: string;
  readonly shape: readonly number[];
  readonly init: ParamInit;
  /** A linear layer's weight: [in, out] here, [out, in] in PyTorch and in checkpoints. */
  readonly linear?: boolean;
}

/** Standard deviation of the normal initialisation (GPT-2, nanoGPT). */
export const INIT_STD = 0.02;

/** Throws a ConfigError naming the first field that is out of range. */
export function validateConfig(cfg: GPTConfig): void {
  const positive: (keyof GPTConfig)[] = ['vocabSize', 'maxPositionEmbeddings', 'nLayers', 'nHeads', 'dModel', 'dFf'];
  for (const key of positive) {
    const v = cfg[key];
    if (!Number.isInteger(v) || v < 1) throw new ConfigError(`model config: ${key} must be a positive integer, got ${v}`);
  }
  if (cfg.dModel % cfg.nHeads !== 0) {
    throw new ConfigError(`model config: dModel (${cfg.dModel}) must be a multiple of nHeads (${cfg.nHeads})`, 'pick --n-heads that divides --d-model');
  }
  if (!(cfg.dropout >= 0 && cfg.dropout < 1)) {
    throw new ConfigError(`model config: dropout must be in [0, 1), got ${cfg.dropout}`);
  }
}

/** A linear layer: y = x @ weight + bias; weight [in, out], bias [out]. */
export interface LinearParams<Mat, Vec> {
  readonly weight: Mat;
  readonly bias: Vec;
}

/** A LayerNorm's scale and shift, [C] each. */
export interface LayerNormParams<Vec> {
  readonly weight: Vec;
  readonly bias: Vec;
}

/** One transformer block (pre-norm): x + attn(ln1(x)), then x + mlp(ln2(x)). */
export interface BlockParams<Mat, Vec> {
  readonly ln1: LayerNormParams<Vec>;
  readonly ln2: LayerNormParams<Vec>;
  /** qkvProj [C, 3C] (q, k, v side by side), outProj [C, C]. */
  readonly attn: { readonly qkvProj: LinearParams<Mat, Vec>; readonly outProj: LinearParams<Mat, Vec> };
  /** fc1 [C, F], fc2 [F, C]. */
  readonly mlp: { readonly fc1: LinearParams<Mat, Vec>; readonly fc2: LinearParams<Mat, Vec> };
}

/** The GPT's parameters as the original's modules nest them; leaves are matrices (Mat) or vectors (Vec). */
export interface GPTParams<Mat, Vec> {
  readonly tokenEmbedding: Mat; // [V, C]
  readonly positionEmbedding: Mat; // [P, C]
  readonly blocks: readonly BlockParams<Mat, Vec>[];
  readonly lnF: LayerNormParams<Vec>;
  readonly lmHead: Mat; // [C, V], untied, no bias
}

/**
 * The parameter tree, each leaf made by `matrix(spec)` or `vector(spec)`. The calls come in the
 * original's state_dict order (the order of the statements below), which is the parameter order
 * everywhere: flat buffers, checkpoints, init streams. The one place parameter names are spelled.
 */
export function buildParams<Mat, Vec>(cfg: GPTConfig, matrix: (spec: ParamSpec) => Mat, vector: (spec: ParamSpec) => Vec): GPTParams<Mat, Vec> {
  const { vocabSize: V, maxPositionEmbeddings: P, dModel: C, dFf: F } = cfg;
  const layerNorm = (prefix: string): LayerNormParams<Vec> => ({
    weight: vector({ name: `${prefix}.weight`, shape: [C], init: 'ones' }),
    bias: vector({ name: `${prefix}.bias`, shape: [C], init: 'zeros' }),
  });
  const linear = (prefix: string, nIn: number, nOut: number): LinearParams<Mat, Vec> => ({
    weight: matrix({ name: `${prefix}.weight`, shape: [nIn, nOut], init: 'normal', linear: true }),
    bias: vector({ name: `${prefix}.bias`, shape: [nOut], init: 'zeros' }),
  });
  const tokenEmbedding = matrix({ name: 'token_embedding.weight', shape: [V, C], init: 'normal' });
  const positionEmbedding = matrix({ name: 'position_embedding.weight', shape: [P, C], init: 'normal' });
  const blocks: BlockParams<Mat, Vec>[] = [];
  for (let l = 0; l < cfg.nLayers; l++) {
    const p = `blocks.${l}`;
    const ln1 = layerNorm(`${p}.ln1`);
    const ln2 = layerNorm(`${p}.ln2`);
    const qkvProj = linear(`${p}.attn.qkv_proj`, C, 3 * C);
    const outProj = linear(`${p}.attn.out_proj`, C, C);
    const fc1 = linear(`${p}.mlp.fc1`, C, F);
    const fc2 = linear(`${p}.mlp.fc2`, F, C);
    blocks.push({ ln1, ln2, attn: { qkvProj, outProj }, mlp: { fc1, fc2 } });
  }
  const lnF = layerNorm('ln_f');
  const lmHead = matrix({ name: 'lm_head.weight', shape: [C, V], init: 'normal', linear: true });
  return { tokenEmbedding, positionEmbedding, blocks, lnF, lmHead };
}

/** Every parameter, in the original's state_dict order. */
export function paramSpecs(cfg: GPTConfig): ParamSpec[] {
  const specs: ParamSpec[] = [];
  const keep = (spec: ParamSpec): ParamSpec => {
    specs.push(spec);
    return spec;
  };
  buildParams(cfg, keep, keep);
  return specs;
}

/** Number of scalars in a shape (PyTorch's numel). */
export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Total parameter count: 2,973,184 at the defaults (V 10000, P 128, 2 layers, C 128, F 512). */
export function countParams(cfg: GPTConfig): number {
  return paramSpecs(cfg).reduce((sum, s) => sum + numel(s.shape), 0);
}

/** The initial values of parameter number `index` (its own random stream of `seed`). */
export function initialValues(spec: ParamSpec, index: number, seed: number): Float32Array {
  const out = new Float32Array(numel(spec.shape));
  if (spec.init === 'ones') out.fill(1);
  else if (spec.init === 'normal') fillNormal(out, streamSeed(seed, index), INIT_STD);
  return out;
}
