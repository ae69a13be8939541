/**
 * Replacements for five tfjs-backend-wasm (4.22) kernels that are slow for the shapes the GPT
 * uses. Each handles the common case and hands every other one to the original kernel; results
 * are identical (tested against the cpu backend in test/worker/tf.test.ts).
 *
 *   Slice       the original first copies its WHOLE input out of the wasm heap, so n slices of
 *               a tensor cost n full copies (32 head slices of [32, 128, 32]: 8 ms, not 0.3).
 *               Contiguous slices are now one copy of the slice.
 *   GatherV2    copies element by element (~50 ns each: 1.5 ms for 256 rows of 128). Gathering
 *               rows along axis 0 is now one copy per row.
 *   Transpose   of a 2-D matrix up to 4096 x 4096 runs a cache-blocked copy in JavaScript: the
 *               original is 2x slower on power-of-two shapes ([1024, 512]: 3.5 ms, not 1.5).
 *   Identity    copies its input; tfjs runs it for every tensor saved for a gradient. Tensors
 *               are immutable, so it now shares the data (reference-counted), as Reshape does.
 *   BatchMatMul and _FusedMatMul run our SIMD GEMM (wasm_gemm.ts): XNNPACK's plain 2-D
 *               products are slower, batched ones run a scalar loop (~1.5 GFLOP/s) and transposed
 *               forms are 10-30x slower than plain ones. If our module cannot load, batched
 *               products with big enough slices run one XNNPACK matMul per slice instead, on views
 *               of the operands' memory (registered as temporary tensors, never copied).
 * With our GEMM come fused kernels of our own for the model's cross-entropy, GELU and LayerNorm, and its
 * dropout masks (wasm_fused.ts).
 *
 * The backend internals used (dataIdMap, dataIdNextNumber, wasm.tfjs.registerTensor/disposeData,
 * wasm.cwrap) are checked when installing: if one is missing, that kernel is left alone.
 * Only tf.ts calls this. tf.ts is where tfjs enters; this file, its kernel overrides, is the one it
 * designates to import tfjs's types too (type-only: erased at run time), so that the two do not
 * import each other (.dependency-cruiser.cjs: tfjs-only-in-tf, no-circular).
 */
import type * as TF from '@tensorflow/tfjs';
import { gemmFor, type GemmBackend } from './wasm_gemm.js';
import { FUSED_KERNELS, registerWasmFused } from './wasm_fused.js';

type Tfjs = typeof TF;
type Info = TF.TensorInfo;

interface WasmData {
  readonly id: number;
  readonly memoryOffset: number;
}

/** The parts of tfjs-backend-wasm's BackendWasm that the replacements use. */
interface WasmBackend {
  makeOutput(shape: number[], dtype: TF.DataType): Info;
  typedArrayFromHeap(t: Info): Float32Array | Int32Array | Uint8Array;
  incRef(dataId: TF.DataId): void;
  dataIdMap: { get(dataId: TF.DataId): WasmData | undefined };
  dataIdNextNumber: number;
  wasm: {
    cwrap(name: string, ret: null, args: string[]): (...a: unknown[]) => void;
    tfjs: { registerTensor(id: number, size: number, offset: number): void; disposeData(id: number): void };
  };
}

export interface KernelArgs {
  inputs: TF.NamedTensorInfoMap;
  attrs?: TF.NamedAttrMap;
  backend: unknown;
}

export type KernelImpl = (args: KernelArgs) => Info | Info[];

/**
 * Per-slice FLOPs (2*M*K*N) from which a batched matMul runs one XNNPACK matMul per slice. At
 * [128, 32] x [32, 128] (1M FLOPs) slices are ~3x faster than the scalar loop; at T 32 (65k)
 * the two tie.
 */
export const SLICED_MATMUL_MIN_FLOPS = 256 * 1024;

let ourGemm = false;
let ourFused = false;
const stock = new Map<string, KernelImpl>();

/** tfjs's own wasm kernel that a replacement stands in for (benchmarks compare the two). */
export function stockWasmKernel(name: string): KernelImpl | undefined {
  return stock.get(name);
}

/**
 * Whether matMuls on the wasm backend run our GEMM, which takes transposed operands as fast as
 * plain ones (XNNPACK's are 10-30x slower: the model then transposes explicitly).
 */
export function wasmMatMulTakesTransposes(): boolean {
  return ourGemm;
}

/** The names of our fused kernels on wasm (wasm_fused.ts), if registered. */
export function wasmFusedKernels(): typeof FUSED_KERNELS | undefined {
  return ourFused ? FUSED_KERNELS : undefined;
}

/** Install the replacements on the registered wasm backend (idempotent). */
export function installFastWasmKernels(tf: Tfjs): void {
  const replace = (name: string, impl: (args: KernelArgs, original: KernelImpl) => Info | Info[]) => {
    const config = tf.getKernel(name, 'wasm');
    if (config === undefined || (config.kernelFunc as { replaced?: boolean }).replaced === true) return;
    const original = config.kernelFunc as unknown as KernelImpl;
    stock.set(name, original);
    const kernelFunc = Object.assign((args: KernelArgs) => impl(args, original), { replaced: true });
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({ ...config, kernelFunc: kernelFunc as unknown as TF.KernelFunc });
  };

  replace('Slice', (args, original) => {
    const x = args.inputs.x as Info;
    const attrs = args.attrs as { begin: number | number[]; size: number | number[] };
    const [begin, size] = tf.slice_util.parseSliceParams(x as TF.Tensor, attrs.begin, attrs.size);
    if (x.dtype === 'string' || !tf.slice_util.isSliceContinous(x.shape, begin, size)) return original(args);
    const backend = args.backend as WasmBackend;
    const offset = tf.slice_util.computeFlatOffset(begin, tf.util.computeStrides(x.shape));
    const out = backend.makeOutput(size, x.dtype); // may grow the heap: take views after it
    const n = tf.util.sizeFromShape(size);
    backend.typedArrayFromHeap(out).set(backend.typedArrayFromHeap(x).subarray(offset, offset + n));
    return out;
  });

  replace('GatherV2', (args, original) => {
    const { x, indices } = args.inputs as { x: Info; indices: Info };
    const { axis, batchDims } = args.attrs as { axis: number; batchDims: number };
    if (x.shape.length === 0 || x.dtype === 'string' || batchDims !== 0 || tf.util.parseAxisParam(axis, x.shape)[0] !== 0) {
      return original(args);
    }
    const backend = args.backend as WasmBackend;
    const rows = x.shape[0] as number;
    const rowSize = tf.util.sizeFromShape(x.shape.slice(1));
    const bad = backend.typedArrayFromHeap(indices).find((i) => !(i >= 0 && i < rows));
    if (bad !== undefined) throw new Error(`GatherV2: the index value ${bad} is not in [0, ${rows - 1}]`);
    const out = backend.makeOutput([...indices.shape, ...x.shape.slice(1)], x.dtype);
    const [idx, src, dst] = [indices, x, out].map((t) => backend.typedArrayFromHeap(t)) as [Int32Array, Float32Array, Float32Array];
    if (rowSize === 1) {
      for (let i = 0; i < idx.length; i++) dst[i] = src[idx[i] as number] as number;
    } else {
      for (let i = 0; i < idx.length; i++) {
        const from = (idx[i] as number) * rowSize;
        dst.set(src.subarray(from, from + rowSize), i * rowSize);
      }
    }
    return out;
  });

  replace('Transpose', (args, original) => {
    const x = args.inputs.x as Info;
    const { perm } = args.attrs as { perm: number[] };
    const [rows, cols] = x.shape as [number, number];
    if (x.shape.length !== 2 || perm[0] !== 1 || x.dtype === 'string' || rows > 4096 || cols > 4096) return original(args);
    const backend = args.backend as WasmBackend;
    const out = backend.makeOutput([cols, rows], x.dtype);
    const [src, dst] = [backend.typedArrayFromHeap(x), backend.typedArrayFromHeap(out)];
    const B = 32; // 32 x 32 blocks: both the rows read and the rows written stay in cache
    for (let i0 = 0; i0 < rows; i0 += B) {
      const i1 = Math.min(i0 + B, rows);
      for (let j0 = 0; j0 < cols; j0 += B) {
        const j1 = Math.min(j0 + B, cols);
        for (let i = i0; i < i1; i++) {
          for (let j = j0, from = i * cols + j0; j < j1; j++, from++) dst[j * rows + i] = src[from] as number;
        }
      }
    }
    return out;
  });

  replace('Identity', (args, original) => {
    const x = args.inputs.x as Info;
    if (x.dtype === 'string') return original(args);
    (args.backend as WasmBackend).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  });

  const backend = tf.findBackend('wasm') as unknown as Partial<WasmBackend> | null;
  const sliced = slicedBatchMatMul(backend);
  if (sliced !== undefined) stock.set('BatchMatMul:xnnpack-slices', (args) => sliced(args, stock.get('BatchMatMul') as KernelImpl));
  const gemm = (be: unknown) => gemmFor(tf, be as GemmBackend);
  if (backend !== null && typeof gemm(backend) !== 'string') {
    replace('BatchMatMul', (args, original) => {
      const { a, b } = args.inputs as { a: Info; b: Info };
      const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
      const g = gemm(args.backend);
      return (typeof g === 'string' ? undefined : g.matMul(a, b, transposeA, transposeB)) ?? original(args);
    });
    replace('_FusedMatMul', (args, original) => {
      const { a, b, bias, preluActivationWeights } = args.inputs as { a: Info; b: Info; bias?: Info; preluActivationWeights?: Info };
      const { transposeA, transposeB, activation } = args.attrs as { transposeA: boolean; transposeB: boolean; activation?: string };
      const g = gemm(args.backend);
      if (typeof g === 'string' || preluActivationWeights != null || (activation !== undefined && activation !== 'linear')) {
        return original(args);
      }
      return g.matMul(a, b, transposeA, transposeB, bias ?? undefined) ?? original(args);
    });
    ourGemm = true;
    ourFused = registerWasmFused(tf);
  } else if (sliced !== undefined) {
    replace('BatchMatMul', sliced);
  }
}

/**
 * The fallback BatchMatMul when our GEMM cannot load: big enough slices of a plain batched
 * product run one XNNPACK matMul each; undefined if the backend lacks an internal it needs.
 */
function slicedBatchMatMul(backend: Partial<WasmBackend> | null): ((args: KernelArgs, original: KernelImpl) => Info | Info[]) | undefined {
  if (
    typeof backend?.wasm?.cwrap !== 'function' ||
    typeof backend.wasm.tfjs?.registerTensor !== 'function' ||
    typeof backend.wasm.tfjs.disposeData !== 'function' ||
    typeof backend.dataIdNextNumber !== 'number'
  )
    return undefined;
  const wasmBatchMatMul = backend.wasm.cwrap('BatchMatMul', null, ['number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number']);
  return (args, original) => {
    const { a, b } = args.inputs as { a: Info; b: Info };
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    if (transposeA || transposeB || a.shape.length !== 3 || b.shape.length !== 3 || a.dtype !== 'float32' || b.dtype !== 'float32') return original(args);
    const [n, m, k] = a.shape as [number, number, number];
    const [nb, kb, cols] = b.shape as [number, number, number];
    if (n < 2 || nb !== n || kb !== k || 2 * m * k * cols < SLICED_MATMUL_MIN_FLOPS) return original(args);
    const be = args.backend as WasmBackend;
    const out = be.makeOutput([n, m, cols], 'float32');
    const offsets = [a, b, out].map((t) => be.dataIdMap.get(t.dataId)?.memoryOffset);
    if (offsets.some((o) => o === undefined)) throw new Error('BatchMatMul: tensor not in the wasm heap');
    const [aOff, bOff, outOff] = offsets as [number, number, number];
    const shapeBytes = (rows: number, c: number) => new Uint8Array(new Int32Array([1, rows, c]).buffer);
    const [aShape, bShape] = [shapeBytes(m, k), shapeBytes(k, cols)];
    for (let i = 0; i < n; i++) {
      // Views: slice i of a, b and out, registered under fresh ids over the same memory.
      const ids = [be.dataIdNextNumber++, be.dataIdNextNumber++, be.dataIdNextNumber++] as [number, number, number];
      be.wasm.tfjs.registerTensor(ids[0], m * k, aOff + 4 * i * m * k);
      be.wasm.tfjs.registerTensor(ids[1], k * cols, bOff + 4 * i * k * cols);
      be.wasm.tfjs.registerTensor(ids[2], m * cols, outOff + 4 * i * m * cols);
      try {
        wasmBatchMatMul(ids[0], aShape, 3, ids[1], bShape, 3, false, false, ids[2]);
      } finally {
        // Unregister only (this also drops XNNPACK's operator cached for the b view); the
        // memory belongs to a, b and out.
        for (const id of ids) be.wasm.tfjs.disposeData(id);
      }
    }
    return out;
  };
}
