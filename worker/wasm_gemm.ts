/**
 * BatchMatMul and _FusedMatMul for tfjs-backend-wasm on our own SIMD GEMM (kernels/gemm.c),
 * replacing XNNPACK (plain 2-D products), tfjs's scalar loop (batched ones, ~1.5 GFLOP/s) and
 * its transposed forms (10-30x slower than plain ones there): every form, with the transposes
 * folded into the GEMM's packing, so the model's backward needs no explicit transposes.
 *
 * No copies: the module is instantiated on the backend's own memory and reads the operands at
 * their offsets; the output comes from the backend's makeOutput, the GEMM's scratch (gemm.c's
 * packed panels, 1.2 MB) from its malloc, once. Cases handled: float32, ranks >= 2 whose batch
 * dimensions are equal or one side's are all 1; _FusedMatMul with no activation (or 'linear') and
 * a bias of [N] or none. Anything else goes to the original kernel.
 *
 * Only tf_wasm_kernels.ts calls this. Like it, this file is one tf.ts designates to import tfjs's
 * types (type-only), so that it does not import tf.ts back (.dependency-cruiser.cjs).
 */
import type * as TF from '@tensorflow/tfjs';
import { instantiateKernels, isMemory, type KernelBuild, type KernelExports } from './kernels/module.js';

type Tfjs = typeof TF;
type Info = TF.TensorInfo;

/** The parts of tfjs-backend-wasm's BackendWasm used here. */
export interface GemmBackend {
  makeOutput(shape: number[], dtype: TF.DataType): Info;
  dataIdMap: { get(dataId: TF.DataId): { memoryOffset: number } | undefined };
  wasm: { asm?: { memory?: unknown }; _malloc?: (bytes: number) => number };
}

export interface Gemm {
  /** a @ b (transposed as asked) + bias, or undefined when this case is not ours. */
  matMul(a: Info, b: Info, transposeA: boolean, transposeB: boolean, bias?: Info): Info | undefined;
}

const perBackend = new WeakMap<object, Map<KernelBuild | 'chosen', Gemm | string>>();

/**
 * Our GEMM on this backend (made once per backend instance and build), or a line saying why not
 * (then the original kernels stay). build: the module's choice (kernels/module.ts) unless given;
 * benchmarks give one to run both builds side by side.
 */
export function gemmFor(tf: Tfjs, backend: GemmBackend, build?: KernelBuild): Gemm | string {
  let builds = perBackend.get(backend);
  if (builds === undefined) perBackend.set(backend, (builds = new Map()));
  let g = builds.get(build ?? 'chosen');
  if (g === undefined) builds.set(build ?? 'chosen', (g = makeGemm(tf, backend, build)));
  return g;
}

const instances = new WeakMap<object, KernelExports | string>();

/**
 * Our kernels module (the build kernels/module.ts chose) instantiated on this backend's memory,
 * once per backend instance (the cross-entropy, wasm_fused.ts, shares it), or a line saying why not.
 */
export function kernelsOn(backend: GemmBackend): KernelExports | string {
  let k = instances.get(backend);
  if (k === undefined) {
    const memory = backend.wasm.asm?.memory;
    k = isMemory(memory) && typeof backend.makeOutput === 'function' ? instantiateKernels(memory) : 'tfjs-backend-wasm does not expose its memory';
    instances.set(backend, k);
  }
  return k;
}

function makeGemm(tf: Tfjs, backend: GemmBackend, build: KernelBuild | undefined): Gemm | string {
  const memory = backend.wasm.asm?.memory;
  const malloc = backend.wasm._malloc;
  if (typeof malloc !== 'function') return 'tfjs-backend-wasm does not expose its malloc';
  const k: KernelExports | string = build === undefined || !isMemory(memory) ? kernelsOn(backend) : instantiateKernels(memory, build);
  if (typeof k === 'string') return k;
  const scratch = malloc(4 * k.gemm_scratch_floats());
  if (!scratch) return 'no memory for the GEMM scratch';
  const offset = (t: Info): number => {
    const o = backend.dataIdMap.get(t.dataId)?.memoryOffset;
    if (o === undefined) throw new Error('matMul: tensor not in the wasm heap');
    return o;
  };

  return {
    matMul(a, b, transposeA, transposeB, bias) {
      if (a.dtype !== 'float32' || b.dtype !== 'float32' || a.shape.length < 2 || b.shape.length < 2) return undefined;
      const ra = a.shape.length;
      const rb = b.shape.length;
      const [m, ka] = transposeA ? [a.shape[ra - 1], a.shape[ra - 2]] : ([a.shape[ra - 2], a.shape[ra - 1]] as number[]);
      const [kb, n] = transposeB ? [b.shape[rb - 1], b.shape[rb - 2]] : ([b.shape[rb - 2], b.shape[rb - 1]] as number[]);
      if (ka !== kb) return undefined; // the original says what is wrong
      const outerA = a.shape.slice(0, -2);
      const outerB = b.shape.slice(0, -2);
      const batchA = tf.util.sizeFromShape(outerA);
      const batchB = tf.util.sizeFromShape(outerB);
      const same = outerA.length === outerB.length && outerA.every((d, i) => d === outerB[i]);
      if (!same && batchA !== 1 && batchB !== 1) return undefined;
      if (bias !== undefined && (bias.dtype !== 'float32' || bias.shape.length !== 1 || bias.shape[0] !== n)) return undefined;
      const outer = tf.broadcast_util.assertAndGetBroadcastShape(outerA, outerB);
      const out = backend.makeOutput([...outer, m as number, n as number], 'float32');
      const batch = tf.util.sizeFromShape(outer);
      const [M, N, K] = [m as number, n as number, ka as number];
      if (batch > 0 && M > 0 && N > 0) {
        k.gemm(
          batch,
          M,
          N,
          K,
          offset(a),
          batchA === 1 ? 0 : M * K,
          transposeA ? 1 : 0,
          offset(b),
          batchB === 1 ? 0 : K * N,
          transposeB ? 1 : 0,
          offset(out),
          bias === undefined ? 0 : offset(bias),
          scratch,
        );
      }
      return out;
    },
  };
}
