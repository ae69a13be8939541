/**
 * Our WebAssembly SIMD kernels (gemm.c, adamw.c), built by scripts/build_kernels.sh into
 * kernels.wasm, which is committed: nothing is compiled at install or run time. The module
 * imports its memory (`env.memory`): the GEMM is instantiated on tfjs-backend-wasm's memory
 * (wasm_gemm.ts), AdamW on a memory of its own (optim.ts).
 */
import { readFileSync } from 'node:fs';

// The tsconfig's libs (ES2022, node) do not declare WebAssembly; the part used here:
declare const WebAssembly: {
  Memory: new (descriptor: { initial: number; maximum?: number }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
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
}

let compiled: object | string | undefined;

/**
 * The compiled module (compiled once per process), or a line saying why it is unavailable (no
 * WebAssembly SIMD in this runtime, or the file is missing): callers then keep their fallback.
 */
export function kernelModule(): object | string {
  if (compiled === undefined) {
    try {
      compiled = new WebAssembly.Module(readFileSync(KERNELS_WASM));
    } catch (e) {
      compiled = `our SIMD kernels did not load (${e instanceof Error ? e.message.split('\n')[0] : String(e)})`;
    }
  }
  return compiled;
}

/** An instance on `memory`, or the reason there is none. */
export function instantiateKernels(memory: WasmMemory): KernelExports | string {
  const mod = kernelModule();
  if (typeof mod === 'string') return mod;
  try {
    return new WebAssembly.Instance(mod, { env: { memory } }).exports as unknown as KernelExports;
  } catch (e) {
    // A shared (threaded) memory does not match the module's import, for one.
    return `our SIMD kernels did not link to that memory (${e instanceof Error ? e.message.split('\n')[0] : String(e)})`;
  }
}
