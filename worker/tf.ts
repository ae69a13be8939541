/**
 * The one place TensorFlow.js enters. Everything else imports `tf` from here, except this file's
 * kernel overrides (tf_wasm_kernels.ts, wasm_gemm.ts, wasm_fused.ts), which take tfjs's types
 * directly (type-only) rather than import this file back.
 *
 * We import the union package `@tensorflow/tfjs`, not `tfjs-core`: the core's CommonJS build
 * registers no gradient functions, so autodiff would fail ("gradient function not found").
 *
 * Backends, best first:
 *   - `tensorflow`: `@tensorflow/tfjs-node-gpu` (libtensorflow, CUDA). An optional dependency whose
 *     install script downloads libtensorflow; it is loaded lazily so that a machine without it
 *     still runs. One process per GPU: the launcher sets `CUDA_VISIBLE_DEVICES` to the worker's GPU.
 *   - `wasm`: `@tensorflow/tfjs-backend-wasm` (XNNPACK, SIMD). One thread per process under Node.
 *   - `cpu`: pure JavaScript; correct but 25-170x slower than wasm (tiny configs only).
 */
// First: tfjs loads without its source maps (~30 MB per worker; tf_no_source_maps.ts).
import { importWithoutSourceMaps, restoreSourceMaps } from './tf_no_source_maps.js';
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../shared/errors.js';
import { BACKEND_CHOICES, type BackendChoice } from './backend_choice.js';
import { installFastWasmKernels, wasmFusedKernels, wasmMatMulTakesTransposes } from './tf_wasm_kernels.js';
import { kernelBuild } from './kernels/module.js';

restoreSourceMaps();

export { tf };

export { BACKEND_CHOICES, type BackendChoice };

export interface BackendInfo {
  readonly name: 'tensorflow' | 'wasm' | 'cpu';
  /** Where the math runs, for the log header: "GPU 0 (CUDA_VISIBLE_DEVICES=1)", "CPU (wasm, SIMD)". */
  readonly device: string;
  /** Set when `auto` did not get `tensorflow`: one line saying why. */
  readonly fallbackReason?: string;
}

const TFJS_NODE_GPU = '@tensorflow/tfjs-node-gpu';
const INSTALL_HINT =
  `install it with: npm install --allow-scripts=${TFJS_NODE_GPU} ${TFJS_NODE_GPU} ` +
  '(needs CUDA 11.2 and cuDNN 8.1; offline machines: point TFJS_NODE_BASE_URI at an http(s) mirror of ' +
  'the libtensorflow 2.9.1 tarball), or pick --backend wasm';

/**
 * Select and initialise the backend (once per process; calling it again switches backends).
 * 'auto': tensorflow if tfjs-node-gpu loads, else wasm, else cpu, with `fallbackReason` saying why.
 * 'tensorflow' that cannot load rejects with a ConfigError saying how to install it; 'wasm' that
 * cannot start rejects likewise. Resolves once the backend is ready for kernels.
 */
export async function initBackend(choice: BackendChoice): Promise<BackendInfo> {
  if (!BACKEND_CHOICES.includes(choice)) {
    throw new ConfigError(`unknown backend "${String(choice)}"`, `use one of: ${BACKEND_CHOICES.join(', ')}`);
  }
  // Production mode only mutes tfjs's console notes (its advert for tfjs-node on the first cpu
  // tensor, among others), which would otherwise land in every worker's output; we report the
  // backend, and why it was chosen, ourselves.
  tf.enableProdMode();
  if (choice === 'cpu') return await useCpu();
  if (choice === 'wasm') {
    const wasm = await tryWasm();
    if (typeof wasm === 'string') throw new ConfigError(`the wasm backend did not start: ${wasm}`, 'pick --backend cpu');
    return wasm;
  }
  const gpu = await tryTensorflow();
  if (typeof gpu !== 'string') return gpu;
  if (choice === 'tensorflow') throw new ConfigError(`--backend tensorflow: ${gpu}`, INSTALL_HINT);
  const wasm = await tryWasm();
  if (typeof wasm !== 'string') return { ...wasm, fallbackReason: gpu };
  return { ...(await useCpu()), fallbackReason: `${gpu}; and the wasm backend did not start: ${wasm}` };
}

/** Whether the current backend is wasm with our GEMM (wasm_gemm.ts) behind its matMuls. */
export function onOurWasmGemm(): boolean {
  return tf.getBackend() === 'wasm' && wasmMatMulTakesTransposes();
}

/**
 * The names of our fused kernels (wasm_fused.ts: cross-entropy, GELU and LayerNorm, forward and
 * gradient; dropout masks) when the current backend is wasm with our kernels; undefined otherwise
 * (model/ops.ts then uses tfjs's ops).
 */
export function ourFusedKernels(): ReturnType<typeof wasmFusedKernels> {
  return tf.getBackend() === 'wasm' ? wasmFusedKernels() : undefined;
}

/**
 * Whether matMul with transposeA/B runs as fast as a plain one: on every backend but stock wasm,
 * whose transposed forms are 10-30x slower (there the model transposes explicitly).
 */
export function matMulTakesTransposes(): boolean {
  return tf.getBackend() !== 'wasm' || wasmMatMulTakesTransposes();
}

/** Load tfjs-node-gpu; the BackendInfo, or one line saying why it could not be used. */
async function tryTensorflow(): Promise<BackendInfo | string> {
  // libtensorflow reads this when it starts: allocate GPU memory on demand, not all of it at once.
  process.env.TF_FORCE_GPU_ALLOW_GROWTH ??= 'true';
  try {
    const name: string = TFJS_NODE_GPU; // a variable, so TypeScript does not need its types
    await importWithoutSourceMaps(() => import(name));
  } catch (e) {
    const code = (e as { code?: string }).code;
    const why =
      code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND'
        ? `${TFJS_NODE_GPU} is not installed`
        : `${TFJS_NODE_GPU} is installed but its native binding did not load (${firstLine(e)})`;
    return why;
  }
  if (tf.findBackendFactory('tensorflow') === null) {
    return `${TFJS_NODE_GPU} loaded but registered with another copy of @tensorflow/tfjs-core (versions differ)`;
  }
  try {
    if (!(await tf.setBackend('tensorflow'))) return `${TFJS_NODE_GPU} loaded but its backend did not start`;
    await tf.ready();
  } catch (e) {
    return `${TFJS_NODE_GPU} did not start (${firstLine(e)})`;
  }
  const visible = process.env.CUDA_VISIBLE_DEVICES;
  const device =
    visible === undefined
      ? 'GPU 0 (all GPUs visible; CPU if CUDA finds none)'
      : visible === '' || visible === '-1'
        ? 'CPU (libtensorflow; CUDA_VISIBLE_DEVICES hides every GPU)'
        : `GPU 0 (CUDA_VISIBLE_DEVICES=${visible})`;
  return { name: 'tensorflow', device };
}

/** Start the wasm backend; the BackendInfo, or one line saying why it could not start. */
async function tryWasm(): Promise<BackendInfo | string> {
  const before = {
    uncaughtException: process.listeners('uncaughtException'),
    unhandledRejection: process.listeners('unhandledRejection'),
  };
  try {
    await importWithoutSourceMaps(() => import('@tensorflow/tfjs-backend-wasm'));
    // setBackend resolves false (and tfjs prints a warning) when the .wasm file fails to load.
    if (!(await tf.setBackend('wasm'))) return 'its .wasm module did not load';
    await tf.ready();
  } catch (e) {
    return firstLine(e);
  } finally {
    // Emscripten's Node glue adds handlers that rethrow any uncaught error from inside its
    // minified source, so the user sees a 10 kB line instead of our message: take them out.
    for (const l of process.listeners('uncaughtException')) {
      if (!before.uncaughtException.includes(l)) process.removeListener('uncaughtException', l);
    }
    for (const l of process.listeners('unhandledRejection')) {
      if (!before.unhandledRejection.includes(l)) process.removeListener('unhandledRejection', l);
    }
  }
  // ROSEDIST_STOCK_WASM_KERNELS=1 keeps tfjs's own kernels: for benchmarks and bug hunts.
  if (process.env.ROSEDIST_STOCK_WASM_KERNELS !== '1') installFastWasmKernels(tf);
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  // Which of our kernel builds runs the matrix products (worker/kernels/module.ts), if ours do.
  const build = wasmMatMulTakesTransposes() ? kernelBuild() : undefined;
  const ours = build === 'fma' ? ', our GEMM with FMA' : build === 'plain' ? ', our GEMM' : '';
  return { name: 'wasm', device: `CPU (wasm, ${simd === true ? 'SIMD' : 'no SIMD'}, 1 thread${ours})` };
}

async function useCpu(): Promise<BackendInfo> {
  // The pure-JS backend ships inside @tensorflow/tfjs: it always starts.
  await tf.setBackend('cpu');
  await tf.ready();
  return { name: 'cpu', device: 'CPU (pure JS)' };
}

function firstLine(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  return text.split('\n')[0] ?? text;
}

/** Bytes of the wasm backend's heap (its high-water mark: it grows, never shrinks); undefined on other backends. */
export function wasmHeapBytes(): number | undefined {
  if (tf.getBackend() !== 'wasm') return undefined;
  const heap = (tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } }).wasm?.HEAPU8;
  return heap?.buffer.byteLength;
}

/** The wasm backend's parts that readInto uses: where a tensor's data lies in its heap. */
interface WasmHeapInternals {
  readonly wasm: { readonly HEAPU8: Uint8Array };
  readonly dataIdMap: { get(dataId: object): { readonly memoryOffset: number | null } | undefined };
}

/**
 * Copy float32 tensor `t`'s values into `out` from `offset` (t.size floats). On wasm straight
 * from the backend's heap: `dataSync()` would first copy them into a new array of their own, a
 * whole model's worth of garbage per step when gradients are read out (GPT.trainStep).
 */
export function readInto(t: tf.Tensor, out: Float32Array, offset = 0): void {
  if (t.dtype !== 'float32') throw new RangeError(`readInto: a ${t.dtype} tensor, expected float32`);
  if (t.isDisposed) throw new RangeError('readInto: the tensor is disposed');
  if (tf.getBackend() === 'wasm') {
    const be = tf.backend() as unknown as Partial<WasmHeapInternals>;
    const at = be.dataIdMap?.get(t.dataId)?.memoryOffset;
    const heap = be.wasm?.HEAPU8;
    if (typeof at === 'number' && heap !== undefined) {
      out.set(new Float32Array(heap.buffer, at, t.size), offset);
      return;
    }
  }
  out.set(t.dataSync() as Float32Array, offset);
}

/**
 * A float32 tensor of `values` (t.size floats) that later writes to `values` do not reach. The
 * wasm backend copies them into its heap at once; the others (cpu, tensorflow) keep the array
 * they are given, so those get a copy.
 */
export function tensorOf(values: Float32Array, shape: readonly number[]): tf.Tensor {
  return tf.tensor(tf.getBackend() === 'wasm' ? values : values.slice(), [...shape], 'float32');
}
