/**
 * The one place TensorFlow.js enters. Everything else imports `tf` from here.
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
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../shared/errors.js';

export { tf };

export type BackendChoice = 'auto' | 'tensorflow' | 'wasm' | 'cpu';
export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'tensorflow', 'wasm', 'cpu'];

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

/** Load tfjs-node-gpu; the BackendInfo, or one line saying why it could not be used. */
async function tryTensorflow(): Promise<BackendInfo | string> {
  // libtensorflow reads this when it starts: allocate GPU memory on demand, not all of it at once.
  process.env.TF_FORCE_GPU_ALLOW_GROWTH ??= 'true';
  try {
    const name: string = TFJS_NODE_GPU; // a variable, so TypeScript does not need its types
    await import(name);
  } catch (e) {
    const code = (e as { code?: string }).code;
    const why = code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND'
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
  const device = visible === undefined ? 'GPU 0 (all GPUs visible; CPU if CUDA finds none)'
    : visible === '' || visible === '-1' ? 'CPU (libtensorflow; CUDA_VISIBLE_DEVICES hides every GPU)'
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
    await import('@tensorflow/tfjs-backend-wasm');
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
  installFastWasmKernels();
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  return { name: 'wasm', device: `CPU (wasm, ${simd === true ? 'SIMD' : 'no SIMD'}, 1 thread)` };
}

/** What the wasm backend offers its kernels (tfjs-backend-wasm's BackendWasm). */
interface WasmKernelBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
}

interface KernelArgs {
  inputs: tf.NamedTensorInfoMap;
  attrs?: tf.NamedAttrMap;
  backend: unknown;
}

/**
 * Replace two wasm kernels that are slow for the shapes the GPT uses; every other case goes to
 * the original kernel. Both copy rows between views of the wasm heap, as wasm's Concat does.
 *   - Slice first copies its WHOLE input out of the heap (readSync): n slices of a tensor cost n
 *     full copies (32 head slices of [32, 128, 32]: 8 ms instead of 0.3). A contiguous slice
 *     (a run of leading-axis rows) is now one copy of the slice.
 *   - GatherV2 copies element by element (~50 ns each: 1.5 ms for 256 rows of 128). Gathering
 *     whole rows along axis 0 is now one copy per row.
 */
function installFastWasmKernels(): void {
  replaceKernel('Slice', (args, original) => {
    const x = args.inputs.x as tf.TensorInfo;
    const attrs = args.attrs as { begin: number | number[]; size: number | number[] };
    const [begin, size] = tf.slice_util.parseSliceParams(x as tf.Tensor, attrs.begin, attrs.size);
    if (x.dtype === 'string' || !tf.slice_util.isSliceContinous(x.shape, begin, size)) return original(args);
    const backend = args.backend as WasmKernelBackend;
    const offset = tf.slice_util.computeFlatOffset(begin, tf.util.computeStrides(x.shape));
    const out = backend.makeOutput(size, x.dtype); // may grow the heap: take views after it
    const n = tf.util.sizeFromShape(size);
    backend.typedArrayFromHeap(out).set(backend.typedArrayFromHeap(x).subarray(offset, offset + n));
    return out;
  });
  replaceKernel('GatherV2', (args, original) => {
    const { x, indices } = args.inputs as { x: tf.TensorInfo; indices: tf.TensorInfo };
    const { axis, batchDims } = args.attrs as { axis: number; batchDims: number };
    if (tf.util.parseAxisParam(axis, x.shape)[0] !== 0 || batchDims !== 0 || x.dtype === 'string' || x.shape.length === 0) {
      return original(args);
    }
    const backend = args.backend as WasmKernelBackend;
    const rows = x.shape[0] as number;
    const rowSize = tf.util.sizeFromShape(x.shape.slice(1));
    const count = tf.util.sizeFromShape(indices.shape);
    const bad = backend.typedArrayFromHeap(indices).find((i) => !(i >= 0 && i < rows));
    if (bad !== undefined) throw new Error(`GatherV2: the index value ${bad} is not in [0, ${rows - 1}]`);
    const out = backend.makeOutput([...indices.shape, ...x.shape.slice(1)], x.dtype);
    const idx = backend.typedArrayFromHeap(indices);
    const src = backend.typedArrayFromHeap(x);
    const dst = backend.typedArrayFromHeap(out);
    if (rowSize === 1) {
      for (let i = 0; i < count; i++) dst[i] = src[idx[i] as number] as number;
    } else {
      for (let i = 0; i < count; i++) {
        const from = (idx[i] as number) * rowSize;
        dst.set(src.subarray(from, from + rowSize), i * rowSize);
      }
    }
    return out;
  });
}

type KernelImpl = (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[];

/** Register `impl` as the wasm kernel `name`, handing it the original for the cases it leaves. */
function replaceKernel(name: string, impl: (args: KernelArgs, original: KernelImpl) => tf.TensorInfo | tf.TensorInfo[]): void {
  const config = tf.getKernel(name, 'wasm');
  if (config === undefined || (config.kernelFunc as { replaced?: boolean }).replaced === true) return;
  const original = config.kernelFunc as unknown as KernelImpl;
  const kernelFunc = Object.assign((args: KernelArgs) => impl(args, original), { replaced: true });
  tf.unregisterKernel(name, 'wasm');
  tf.registerKernel({ ...config, kernelFunc: kernelFunc as unknown as tf.KernelFunc });
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
