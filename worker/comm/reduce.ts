/**
 * Element-wise reduction kernels for the ring: `combine` (dst = op(dst, src)) and `divide`
 * (dst = dst / divisor, for `mean`). Two implementations of one interface:
 *   - 'wasm' (default): WebAssembly SIMD (simd.ts). The operands live outside the module's
 *     memory (a received message, a slice of the caller's buffer), so each 256 KiB block is
 *     copied in, combined with 16-byte vectors and copied back; the blocks stay in L2.
 *   - 'js': an 8-way unrolled loop, for engines without WebAssembly SIMD.
 * Measured on 64 MiB of float32 in 1 MiB segments (scripts/bench_allreduce.ts --kernels prints
 * both): each is bound by memory bandwidth at ~3–4.5 GB/s of buffer, the plain (not unrolled) JS
 * loop reaches 1.5–1.9 GB/s.
 *
 * NaN propagates through max and min in both (as Math.max does), so a NaN gradient is not lost.
 */
import type { FloatArray } from './process_group.js';
import { KERNEL_NAMES, kernelModuleBytes, type KernelName } from './simd.js';

/** The element-wise operations a ring step applies (`mean` is `sum` then `divide`). */
export type CombineOp = 'sum' | 'max' | 'min';
export type ReducerKind = 'wasm' | 'js';

/**
 * What the ring's last reduce-scatter step also does with a combined segment, in the same pass
 * (while each block is in cache): divide it (for `mean`) and copy it into the caller's buffer.
 */
export interface Finish {
  /** dst[i] = op(dst[i], src[i]) / divideBy. */
  readonly divideBy?: number;
  /** Receives a copy of the result; one type and length as `dst`; may be `src` itself. */
  readonly copyTo?: FloatArray;
  /**
   * Receives the result instead of `dst`, which is then left as it was (one type and length as
   * `dst`): the ring writes a segment it forwards into memory of its own, not into the received
   * message, which it can then free at once.
   */
  readonly into?: FloatArray;
}

export interface Reducer {
  readonly kind: ReducerKind;
  /** dst[i] = op(dst[i], src[i]) (into finish.into instead, if given), then `finish`; `dst` and `src` have one type and one length. */
  combine(dst: FloatArray, src: FloatArray, op: CombineOp, finish?: Finish): void;
  /** dst[i] = dst[i] / divisor. */
  divide(dst: FloatArray, divisor: number): void;
  /**
   * dst[i] = dst[i] * factor, the product in float64 rounded once to float32 (as JavaScript's
   * `dst[i] *= factor`, bit for bit); the index of the first result that is not finite, or -1.
   * The step buffer's pre-division by the world size (ddp.ts): ~2–3 ms for the default GPT's
   * 2,973,185 floats (copies into the staging block and back included) against ~5–7 ms for the
   * JavaScript loop.
   */
  scale(dst: Float32Array, factor: number): number;
  /** The index of the first NaN or ±Infinity in `a`, or -1 (`a` is left as it is). */
  firstNonFinite(a: Float32Array): number;
}

// The tsconfig's libs (ES2022, node) do not declare WebAssembly; the part used here:
declare const WebAssembly: {
  Memory: new (descriptor: { initial: number }) => { readonly buffer: ArrayBuffer };
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: Record<string, unknown> };
};

/** Bytes per staging block: two blocks (512 KiB) fit a core's L2 next to the message. */
const BLOCK_BYTES = 256 * 1024;

type BinaryKernel = (dst: number, a: number, b: number, nbytes: number) => void;
type DivKernel = (dst: number, a: number, nbytes: number, divisor: number) => void;
type ScaleKernel = (dst: number, a: number, nbytes: number, factor: number) => number;
type CheckKernel = (a: number, nbytes: number) => number;

function bytesOf(a: FloatArray): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

class WasmReducer implements Reducer {
  readonly kind = 'wasm';
  private readonly mem: Uint8Array;
  private readonly fns: Record<KernelName, BinaryKernel | DivKernel | ScaleKernel | CheckKernel>;

  constructor() {
    const memory = new WebAssembly.Memory({ initial: (2 * BLOCK_BYTES) / 65536 });
    const instance = new WebAssembly.Instance(new WebAssembly.Module(kernelModuleBytes()), { env: { memory } });
    this.mem = new Uint8Array(memory.buffer);
    this.fns = Object.fromEntries(KERNEL_NAMES.map((n) => [n, instance.exports[n]])) as typeof this.fns;
  }

  combine(dst: FloatArray, src: FloatArray, op: CombineOp, finish?: Finish): void {
    const f32 = dst instanceof Float32Array;
    const kernel = this.fns[`${op === 'sum' ? 'add' : op}_${f32 ? 'f32' : 'f64'}`] as BinaryKernel;
    const divideBy = finish?.divideBy;
    const div = this.fns[f32 ? 'div_f32' : 'div_f64'] as DivKernel;
    const d = bytesOf(dst);
    const s = bytesOf(src);
    const c = finish?.copyTo === undefined ? undefined : bytesOf(finish.copyTo);
    const out = finish?.into === undefined ? d : bytesOf(finish.into);
    for (let off = 0; off < d.length; off += BLOCK_BYTES) {
      const n = Math.min(BLOCK_BYTES, d.length - off);
      this.mem.set(d.subarray(off, off + n), 0);
      this.mem.set(s.subarray(off, off + n), BLOCK_BYTES);
      kernel(0, 0, BLOCK_BYTES, n);
      if (divideBy !== undefined) div(0, 0, n, divideBy);
      const result = this.mem.subarray(0, n);
      out.set(result, off);
      c?.set(result, off);
    }
  }

  divide(dst: FloatArray, divisor: number): void {
    const kernel = this.fns[dst instanceof Float32Array ? 'div_f32' : 'div_f64'] as DivKernel;
    const d = bytesOf(dst);
    for (let off = 0; off < d.length; off += BLOCK_BYTES) {
      const n = Math.min(BLOCK_BYTES, d.length - off);
      this.mem.set(d.subarray(off, off + n), 0);
      kernel(0, 0, n, divisor);
      d.set(this.mem.subarray(0, n), off);
    }
  }

  scale(dst: Float32Array, factor: number): number {
    const kernel = this.fns.scale_f32 as ScaleKernel;
    const d = bytesOf(dst);
    let bad = -1;
    for (let off = 0; off < d.length; off += BLOCK_BYTES) {
      const n = Math.min(BLOCK_BYTES, d.length - off);
      this.mem.set(d.subarray(off, off + n), 0);
      const flag = kernel(0, 0, n, factor);
      d.set(this.mem.subarray(0, n), off);
      // Only a block holding a non-finite value is searched (rare: a diverged step).
      if (bad < 0 && flag !== 0) {
        const i = firstNonFiniteOf(dst.subarray(off / 4, (off + n) / 4));
        if (i >= 0) bad = off / 4 + i;
      }
    }
    return bad;
  }

  firstNonFinite(a: Float32Array): number {
    const kernel = this.fns.nonfinite_f32 as CheckKernel;
    const d = bytesOf(a);
    for (let off = 0; off < d.length; off += BLOCK_BYTES) {
      const n = Math.min(BLOCK_BYTES, d.length - off);
      this.mem.set(d.subarray(off, off + n), 0);
      if (kernel(0, n) !== 0) {
        const i = firstNonFiniteOf(a.subarray(off / 4, (off + n) / 4));
        if (i >= 0) return off / 4 + i;
      }
    }
    return -1;
  }
}

function firstNonFiniteOf(a: Float32Array): number {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return i;
  return -1;
}

function addJs(d: FloatArray, s: FloatArray): void {
  const n = d.length;
  const n8 = n - (n % 8);
  let i = 0;
  for (; i < n8; i += 8) {
    d[i] += s[i];
    d[i + 1] += s[i + 1];
    d[i + 2] += s[i + 2];
    d[i + 3] += s[i + 3];
    d[i + 4] += s[i + 4];
    d[i + 5] += s[i + 5];
    d[i + 6] += s[i + 6];
    d[i + 7] += s[i + 7];
  }
  for (; i < n; i++) d[i] += s[i];
}

function maxJs(d: FloatArray, s: FloatArray): void {
  for (let i = 0; i < d.length; i++) d[i] = Math.max(d[i], s[i]);
}

function minJs(d: FloatArray, s: FloatArray): void {
  for (let i = 0; i < d.length; i++) d[i] = Math.min(d[i], s[i]);
}

class JsReducer implements Reducer {
  readonly kind = 'js';
  combine(dst: FloatArray, src: FloatArray, op: CombineOp, finish?: Finish): void {
    const out = finish?.into ?? dst;
    if (out !== dst) out.set(dst);
    if (op === 'sum') addJs(out, src);
    else if (op === 'max') maxJs(out, src);
    else minJs(out, src);
    if (finish?.divideBy !== undefined) this.divide(out, finish.divideBy);
    finish?.copyTo?.set(out);
  }
  divide(dst: FloatArray, divisor: number): void {
    for (let i = 0; i < dst.length; i++) dst[i] /= divisor;
  }
  scale(dst: Float32Array, factor: number): number {
    let bad = -1;
    for (let i = 0; i < dst.length; i++) {
      dst[i] = (dst[i] as number) * factor;
      if (bad < 0 && !Number.isFinite(dst[i])) bad = i; // the float32, which may overflow where the float64 did not
    }
    return bad;
  }
  firstNonFinite(a: Float32Array): number {
    return firstNonFiniteOf(a);
  }
}

let shared: Reducer | undefined;

/**
 * One reducer of the default kind for the passes over a whole step buffer outside the ring (the
 * pre-division, the finite checks: ddp.ts, numerics.ts): made on first use, 512 KiB of staging.
 */
export function sharedReducer(): Reducer {
  shared ??= createReducer();
  return shared;
}

/** A reducer of the given kind; default: 'wasm' where WebAssembly SIMD compiles, else 'js'. */
export function createReducer(kind?: ReducerKind): Reducer {
  if (kind === 'js') return new JsReducer();
  try {
    return new WasmReducer();
  } catch (e) {
    if (kind === 'wasm') throw e;
    return new JsReducer();
  }
}
