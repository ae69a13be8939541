/**
 * AdamW over flat float32 buffers, exactly torch.optim.AdamW (amsgrad off, maximize off):
 *
 *   t += 1
 *   p -= lr * wd * p                       (decoupled weight decay, on EVERY parameter: the
 *                                           original hands all of them, biases and LayerNorm
 *                                           weights included, to one param group)
 *   m = b1 * m + (1 - b1) * g
 *   v = b2 * v + (1 - b2) * g^2
 *   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 *
 * One pass over plain arrays: no tensors, no per-parameter allocations. State (m, v, stepCount)
 * is public so checkpoints can save and restore it.
 */
import { RosedistError } from '../shared/errors.js';

export interface AdamWConfig {
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
}

/** PyTorch's defaults, with the project's lr. */
export const ADAMW_DEFAULTS: AdamWConfig = { lr: 3e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };

export class AdamW {
  readonly cfg: AdamWConfig;
  /** First moment, one entry per parameter. */
  readonly m: Float32Array;
  /** Second moment, one entry per parameter. */
  readonly v: Float32Array;
  /** Steps taken so far (PyTorch's state['step']); the next step uses stepCount + 1. */
  stepCount = 0;

  constructor(numParams: number, cfg: AdamWConfig) {
    if (!Number.isInteger(numParams) || numParams < 0) {
      throw new RosedistError(`AdamW: numParams must be a non-negative integer, got ${numParams}`);
    }
    const bad = Object.entries(cfg).find(([, value]) => typeof value !== 'number' || !Number.isFinite(value));
    if (bad !== undefined) throw new RosedistError(`AdamW: ${bad[0]} must be a finite number, got ${String(bad[1])}`);
    if (!(cfg.beta1 >= 0 && cfg.beta1 < 1 && cfg.beta2 >= 0 && cfg.beta2 < 1)) {
      throw new RosedistError(`AdamW: betas must be in [0, 1), got ${cfg.beta1} and ${cfg.beta2}`);
    }
    this.cfg = { ...cfg };
    this.m = new Float32Array(numParams);
    this.v = new Float32Array(numParams);
  }

  /** One update, in place on params, from grads (same length); increments stepCount. */
  step(params: Float32Array, grads: Float32Array): void {
    const n = this.m.length;
    if (params.length !== n || grads.length !== n) {
      throw new RosedistError(`AdamW.step: params (${params.length}) and grads (${grads.length}) must have ${n} elements`);
    }
    const { lr, beta1, beta2, eps, weightDecay } = this.cfg;
    this.stepCount += 1;
    const t = this.stepCount;
    // As torch's single-tensor path: step_size = lr / bc1, denom = sqrt(v) / sqrt(bc2) + eps.
    const stepSize = lr / (1 - beta1 ** t);
    const sqrtBc2 = Math.sqrt(1 - beta2 ** t);
    const decay = 1 - lr * weightDecay;
    const { m, v } = this;
    for (let i = 0; i < n; i++) {
      const g = grads[i] as number;
      const mi = beta1 * (m[i] as number) + (1 - beta1) * g;
      const vi = beta2 * (v[i] as number) + (1 - beta2) * g * g;
      m[i] = mi;
      v[i] = vi;
      params[i] = (params[i] as number) * decay - stepSize * mi / (Math.sqrt(vi) / sqrtBc2 + eps);
    }
  }
}
