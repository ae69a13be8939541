/**
 * Our WebAssembly SIMD kernels (gemm.c, adamw.c, xent.c, gelu.c, layernorm.c, dropout.c), built by scripts/build_kernels.sh into
 * kernels.wasm (plain SIMD128) and kernels_fma.wasm (relaxed SIMD: the GEMM's multiply-adds
 * fused), both committed: nothing is compiled at install or run time. The module imports its
 * memory (`env.memory`): the GEMM and the cross-entropy are instantiated on tfjs-backend-wasm's
 * memory (wasm_gemm.ts, wasm_fused.ts), AdamW on a memory of its own (optim.ts).
 */
import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';

// The tsconfig's libs (ES2022, node) do not declare WebAssembly; the part used here:
declare const WebAssembly: {
  Memory: new (descriptor: { initial: number; maximum?: number }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  validate(bytes: Uint8Array): boolean;
  Instance: new (module: object, imports: object) => { readonly exports: Record<string, unknown> };
};

/** A WebAssembly.Memory (its buffer is replaced when it grows). */
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
}

/** A fixed-size memory of `pages` 64 KiB pages: it never grows, so views on it stay valid. */
export function fixedMemory(pages: number): WasmMemory {
  return new WebAssembly.Memory({ initial: pages, maximum: pages });
}

/** Whether x is a WebAssembly.Memory. */
export function isMemory(x: unknown): x is WasmMemory {
  return x instanceof (WebAssembly.Memory as unknown as new () => object);
}

export const KERNELS_WASM = new URL('./kernels.wasm', import.meta.url);
export const KERNELS_FMA_WASM = new URL('./kernels_fma.wasm', import.meta.url);

/** Which build runs: 'fma' (kernels_fma.wasm) or 'plain' (kernels.wasm). */
export type KernelBuild = 'fma' | 'plain';

/**
 * Whether this runtime takes relaxed SIMD. Node 22's V8 ships it; Node 20's has it behind
 * --experimental-wasm-relaxed-simd, a flag V8 reads when it validates a module, so it is set here,
 * before the first module that needs it, and only when that module is refused without it.
 */
function relaxedSimdAccepted(bytes: Uint8Array): boolean {
  if (WebAssembly.validate(bytes)) return true;
  setFlagsFromString('--experimental-wasm-relaxed-simd');
  return WebAssembly.validate(bytes);
}

export interface KernelExports {
  /** See gemm.c. Pointers are byte offsets, strides in floats, flags 0/1. */
  gemm(
    batch: number,
    m: number,
    n: number,
    k: number,
    a: number,
    strideA: number,
    transA: number,
    b: number,
    strideB: number,
    transB: number,
    c: number,
    bias: number,
    scratch: number,
  ): void;
  /** Floats of scratch gemm needs. */
  gemm_scratch_floats(): number;
  /** See adamw.c. */
  adamw(
    p: number,
    g: number,
    m: number,
    v: number,
    n: number,
    beta1: number,
    oneMinusBeta1: number,
    beta2: number,
    oneMinusBeta2: number,
    stepSize: number,
    sqrtBc2: number,
    decay: number,
    eps: number,
  ): void;
  /** See xent.c: exp of n floats at x into out (byte offsets). */
  exp_f32(x: number, out: number, n: number): void;
  /** See xent.c: logits z [n, v], ids y [n] (int32), writes softmax p [n, v]; the summed loss. */
  xent_forward(z: number, y: number, n: number, v: number, p: number): number;
  /** See xent.c: g = (p - onehot(y)) * dy, g [n, v]. */
  xent_backward(p: number, y: number, n: number, v: number, dy: number, g: number): void;
  /** See gelu.c: y = gelu(x), n floats (byte offsets). */
  gelu_forward(x: number, y: number, n: number): void;
  /** See gelu.c: dx = dy gelu'(x), n floats. */
  gelu_backward(x: number, dy: number, dx: number, n: number): void;
  /** See layernorm.c: x [n, c], gamma, beta [c] → y, xhat [n, c], rstd [n]. */
  layernorm_forward(x: number, gamma: number, beta: number, n: number, c: number, eps: number, y: number, xhat: number, rstd: number): void;
  /** See layernorm.c: dy, xhat [n, c], rstd [n], gamma [c] → dx [n, c], dgamma, dbeta [c]. */
  /** See dropout.c: n floats at out, the mask of rng.ts dropoutMask; threshold = ceil(rate 2^32). */
  dropout_mask(out: number, n: number, seed: number, threshold: number, keep: number): void;
  layernorm_backward(dy: number, xhat: number, rstd: number, gamma: number, n: number, c: number, dx: number, dgamma: number, dbeta: number): void;
}

const FILES: Record<KernelBuild, URL> = { fma: KERNELS_FMA_WASM, plain: KERNELS_WASM };

/** Compile one build, or say why it cannot run here. */
export function compileKernels(build: KernelBuild): object | string {
  try {
    const bytes = readFileSync(FILES[build]);
    if (build === 'fma' && !relaxedSimdAccepted(bytes)) return 'this runtime has no relaxed SIMD';
    return new WebAssembly.Module(bytes);
  } catch (e) {
    return `our SIMD kernels did not load (${e instanceof Error ? e.message.split('\n')[0] : String(e)})`;
  }
}

let chosen: { readonly module: object; readonly build: KernelBuild } | string | undefined;

/**
 * The build every kernel of this process runs (chosen and compiled once): kernels_fma.wasm where
 * the runtime takes relaxed SIMD and ROSEDIST_PLAIN_SIMD is not 1 (benchmarks set it to compare),
 * else kernels.wasm; or a line saying why neither is available (no WebAssembly SIMD in this
 * runtime, or the files are missing): callers then keep their fallback.
 */
function chosenKernels(): { readonly module: object; readonly build: KernelBuild } | string {
  if (chosen === undefined) {
    const fma = process.env.ROSEDIST_PLAIN_SIMD === '1' ? 'ROSEDIST_PLAIN_SIMD=1' : compileKernels('fma');
    const plain = typeof fma === 'string' ? compileKernels('plain') : undefined;
    chosen = typeof fma !== 'string' ? { module: fma, build: 'fma' } : typeof plain === 'object' ? { module: plain, build: 'plain' } : (plain ?? fma);
  }
  return chosen;
}

/** Which build runs, or the reason there is none. */
export function kernelBuild(): KernelBuild | string {
  const c = chosenKernels();
  return typeof c === 'string' ? c : c.build;
}

/** An instance on `memory` of the chosen build (or of `build`), or the reason there is none. */
export function instantiateKernels(memory: WasmMemory, build?: KernelBuild): KernelExports | string {
  let mod: object | string;
  if (build !== undefined) {
    mod = compileKernels(build);
  } else {
    const c = chosenKernels();
    mod = typeof c === 'string' ? c : c.module;
  }
  if (typeof mod === 'string') return mod;
  try {
    return new WebAssembly.Instance(mod, { env: { memory } }).exports as unknown as KernelExports;
  } catch (e) {
    // A shared (threaded) memory does not match the module's import, for one.
    return `our SIMD kernels did not link to that memory (${e instanceof Error ? e.message.split('\n')[0] : String(e)})`;
  }
}
