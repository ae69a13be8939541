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
 *
 * The loop runs in our WebAssembly SIMD kernel (kernels/adamw.c, float32 as PyTorch; ~6x faster
 * than the JavaScript loop, which stays as the fallback and for comparison). m and v live in the
 * kernel's own fixed-size memory; params and grads pass through it in CHUNK-sized pieces that stay
 * in cache, so the copies cost little and no second full-size buffer is needed.
 */
import { RosedistError } from '../shared/errors.js';
import { fixedMemory, instantiateKernels, type KernelExports } from './kernels/module.js';

/** Floats of params and of grads staged per kernel call (64 KiB each). */
const CHUNK = 16384;
const PAGE = 65536;

export interface AdamWConfig {
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
}

/** PyTorch's defaults, with the project's lr. */
export const ADAMW_DEFAULTS: AdamWConfig = { lr: 3e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };

/** One step's coefficients (AdamW.beginStep). */
export interface AdamWStep {
  readonly stepSize: number;
  readonly sqrtBc2: number;
  readonly decay: number;
}

export class AdamW {
  readonly cfg: AdamWConfig;
  /** First moment, one entry per parameter. */
  readonly m: Float32Array;
  /** Second moment, one entry per parameter. */
  readonly v: Float32Array;
  /** Steps taken so far (PyTorch's state['step']); the next step uses stepCount + 1. */
  stepCount = 0;

  /** The SIMD kernel and where its staging buffers lie; undefined: the JavaScript loop. */
  private readonly simd: { k: KernelExports; p: Float32Array; g: Float32Array } | undefined;

  /** opts.simd false: always the JavaScript loop. */
  constructor(numParams: number, cfg: AdamWConfig, opts: { simd?: boolean } = {}) {
    if (!Number.isInteger(numParams) || numParams < 0) {
      throw new RosedistError(`AdamW: numParams must be a non-negative integer, got ${numParams}`);
    }
    const bad = Object.entries(cfg).find(([, value]) => typeof value !== 'number' || !Number.isFinite(value));
    if (bad !== undefined) throw new RosedistError(`AdamW: ${bad[0]} must be a finite number, got ${String(bad[1])}`);
    if (!(cfg.beta1 >= 0 && cfg.beta1 < 1 && cfg.beta2 >= 0 && cfg.beta2 < 1)) {
      throw new RosedistError(`AdamW: betas must be in [0, 1), got ${cfg.beta1} and ${cfg.beta2}`);
    }
    this.cfg = { ...cfg };
    // Memory layout (bytes): m [0, 4n'), v [4n', 8n'), params chunk, grads chunk; n' = n rounded
    // up to 4 floats, so each region starts 16-byte aligned. wasm32 addresses 4 GiB at most.
    const padded = Math.ceil(numParams / 4) * 4;
    const bytes = 4 * (2 * padded + 2 * CHUNK);
    const kernel = opts.simd !== false && bytes <= 2 ** 32 - PAGE ? this.makeKernel(bytes) : undefined;
    if (kernel === undefined) {
      this.m = new Float32Array(numParams);
      this.v = new Float32Array(numParams);
      this.simd = undefined;
    } else {
      const { k, buffer } = kernel;
      this.m = new Float32Array(buffer, 0, numParams);
      this.v = new Float32Array(buffer, 4 * padded, numParams);
      this.simd = { k, p: new Float32Array(buffer, 8 * padded, CHUNK), g: new Float32Array(buffer, 8 * padded + 4 * CHUNK, CHUNK) };
    }
  }

  /** Whether steps run the SIMD kernel. */
  get usesSimd(): boolean {
    return this.simd !== undefined;
  }

  private makeKernel(bytes: number): { k: KernelExports; buffer: ArrayBuffer } | undefined {
    try {
      const memory = fixedMemory(Math.ceil(bytes / PAGE));
      const k = instantiateKernels(memory);
      return typeof k === 'string' ? undefined : { k, buffer: memory.buffer };
    } catch {
      return undefined; // no memory that large, or no WebAssembly SIMD: the JavaScript loop
    }
  }

  /** One update, in place on params, from grads (same length); increments stepCount. */
  step(params: Float32Array, grads: Float32Array): void {
    const n = this.m.length;
    if (params.length !== n || grads.length !== n) {
      throw new RosedistError(`AdamW.step: params (${params.length}) and grads (${grads.length}) must have ${n} elements`);
    }
    this.stepRange(params, grads, 0, n, this.beginStep());
  }

  /**
   * Start one update to be applied range by range (overlap: each gradient bucket as it arrives):
   * increments stepCount and returns the step's coefficients for `stepRange`. The ranges of one
   * step must cover every element once; the result is step()'s, bit for bit (element-wise).
   */
  beginStep(): AdamWStep {
    const { lr, beta1, beta2, weightDecay } = this.cfg;
    this.stepCount += 1;
    const t = this.stepCount;
    // As torch's single-tensor path: step_size = lr / bc1, denom = sqrt(v) / sqrt(bc2) + eps.
    return { stepSize: lr / (1 - beta1 ** t), sqrtBc2: Math.sqrt(1 - beta2 ** t), decay: 1 - lr * weightDecay };
  }

  /** The update of beginStep's step on elements [lo, hi) of params (params, grads: all numParams long). */
  stepRange(params: Float32Array, grads: Float32Array, lo: number, hi: number, at: AdamWStep): void {
    const n = this.m.length;
    if (params.length !== n || grads.length !== n || !(Number.isInteger(lo) && Number.isInteger(hi) && 0 <= lo && lo <= hi && hi <= n)) {
      throw new RosedistError(`AdamW.stepRange: [${lo}, ${hi}) of params (${params.length}) and grads (${grads.length}), ${n} elements`);
    }
    const { beta1, beta2, eps } = this.cfg;
    const { stepSize, sqrtBc2, decay } = at;
    if (this.simd !== undefined) {
      const { k, p, g } = this.simd;
      const [mAt, vAt, pAt, gAt] = [this.m.byteOffset, this.v.byteOffset, p.byteOffset, g.byteOffset];
      for (let i = lo; i < hi; i += CHUNK) {
        const len = Math.min(CHUNK, hi - i);
        p.set(params.subarray(i, i + len));
        g.set(grads.subarray(i, i + len));
        k.adamw(pAt, gAt, mAt + 4 * i, vAt + 4 * i, len, beta1, 1 - beta1, beta2, 1 - beta2, stepSize, sqrtBc2, decay, eps);
        params.set(p.subarray(0, len), i);
      }
      return;
    }
    const { m, v } = this;
    for (let i = lo; i < hi; i++) {
      const g = grads[i] as number;
      const mi = beta1 * (m[i] as number) + (1 - beta1) * g;
      const vi = beta2 * (v[i] as number) + (1 - beta2) * g * g;
      m[i] = mi;
      v[i] = vi;
      params[i] = (params[i] as number) * decay - (stepSize * mi) / (Math.sqrt(vi) / sqrtBc2 + eps);
    }
  }
}
