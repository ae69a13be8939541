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
    throw new ConfigError(`model config: dModel (${cfg.dModel}) must be a multiple of nHeads (${cfg.nHeads})`,
      'pick --n-heads that divides --d-model');
  }
  if (!(cfg.dropout >= 0 && cfg.dropout < 1)) {
    throw new ConfigError(`model config: dropout must be in [0, 1), got ${cfg.dropout}`);
  }
}

/** Every parameter, in the original's state_dict order. */
export function paramSpecs(cfg: GPTConfig): ParamSpec[] {
  const { vocabSize: V, maxPositionEmbeddings: P, dModel: C, dFf: F } = cfg;
  const specs: ParamSpec[] = [
    { name: 'token_embedding.weight', shape: [V, C], init: 'normal' },
    { name: 'position_embedding.weight', shape: [P, C], init: 'normal' },
  ];
  const layerNorm = (prefix: string) => specs.push(
    { name: `${prefix}.weight`, shape: [C], init: 'ones' },
    { name: `${prefix}.bias`, shape: [C], init: 'zeros' },
  );
  const linear = (prefix: string, nIn: number, nOut: number) => specs.push(
    { name: `${prefix}.weight`, shape: [nIn, nOut], init: 'normal', linear: true },
    { name: `${prefix}.bias`, shape: [nOut], init: 'zeros' },
  );
  for (let l = 0; l < cfg.nLayers; l++) {
    const p = `blocks.${l}`;
    layerNorm(`${p}.ln1`);
    layerNorm(`${p}.ln2`);
    linear(`${p}.attn.qkv_proj`, C, 3 * C);
    linear(`${p}.attn.out_proj`, C, C);
    linear(`${p}.mlp.fc1`, C, F);
    linear(`${p}.mlp.fc2`, F, C);
  }
  layerNorm('ln_f');
  specs.push({ name: 'lm_head.weight', shape: [C, V], init: 'normal', linear: true }); // untied, no bias
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
