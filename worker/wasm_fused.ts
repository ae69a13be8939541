/**
 * Fused kernels of our own on tfjs-backend-wasm, each running our SIMD module (kernels/*.c) on the
 * tensors where they lie in the backend's memory (the module instance wasm_gemm.ts made on it),
 * outputs from the backend's makeOutput. They have no gradients of their own: model/ops.ts calls
 * each pair inside a tf.customGrad, whose gradient calls the second.
 *
 * The model's summed cross-entropy (model/ops.ts crossEntropySum), kernels/xent.c:
 *
 *   RosedistCrossEntropy      logits [n, V] float32, targets [n] int32
 *                             → [the summed loss (float32 scalar), softmax(logits) [n, V]]
 *   RosedistCrossEntropyGrad  probs [n, V], targets [n], dy (float32 scalar)
 *                             → (probs - onehot(targets)) * dy [n, V]
 *
 * tfjs's ops for the same (softmax, two max, log, gather; then oneHot, cast, sub, mul) make seven
 * passes over [n, V] forward and four backward, with a tensor for each; these make three (in
 * cache, row by row) and one.
 *
 * The exact GELU (model/ops.ts gelu), kernels/gelu.c:
 *
 *   RosedistGelu      x (float32, any shape) → x Phi(x)
 *   RosedistGeluGrad  x, dy (same shape)     → dy (Phi(x) + x phi(x))
 *
 * tfjs's ops make ~6 passes forward and ~8 backward and keep Phi(x) for the gradient; these make
 * one each and keep only x.
 *
 * LayerNorm over the last axis (model/ops.ts layerNorm), kernels/layernorm.c:
 *
 *   RosedistLayerNorm      x [n, c], gamma [c], beta [c]; attr eps → [y [n, c], xhat [n, c], rstd [n, 1]]
 *   RosedistLayerNormGrad  dy [n, c], xhat, rstd, gamma → [dx [n, c], dgamma [c], dbeta [c]]
 *
 * tfjs's ops make ~9 passes forward and ~12 backward, a tensor each; these make 2-3 per row, in L1.
 *
 * An inverted-dropout mask (model/ops.ts dropoutMaskTensor), kernels/dropout.c:
 *
 *   RosedistDropoutMask    no inputs; attrs shape, seed, rate → float32 [shape], the bits of
 *                          rng.ts dropoutMask(size, rate, seed), made in the backend's memory
 *
 * Only tf_wasm_kernels.ts calls this. Like it, this file is one tf.ts designates to import tfjs's
 * types (type-only), so that it does not import tf.ts back (.dependency-cruiser.cjs).
 */
import type * as TF from '@tensorflow/tfjs';
import { kernelsOn, type GemmBackend } from './wasm_gemm.js';

type Tfjs = typeof TF;
type Info = TF.TensorInfo;

/** The kernels' names (registered for the wasm backend only). */
export const FUSED_KERNELS = {
  crossEntropy: { forward: 'RosedistCrossEntropy', backward: 'RosedistCrossEntropyGrad' },
  gelu: { forward: 'RosedistGelu', backward: 'RosedistGeluGrad' },
  layerNorm: { forward: 'RosedistLayerNorm', backward: 'RosedistLayerNormGrad' },
  dropoutMask: 'RosedistDropoutMask',
} as const;
const K = FUSED_KERNELS;

interface XentBackend extends GemmBackend {
  typedArrayFromHeap(t: Info): Float32Array | Int32Array | Uint8Array;
}

interface Args {
  inputs: TF.NamedTensorInfoMap;
  backend: unknown;
  attrs?: Record<string, unknown>;
}

type Register = (kernelName: string, impl: (inputs: TF.NamedTensorInfoMap, backend: XentBackend, attrs: Record<string, unknown>) => Info | Info[]) => void;

/**
 * A function that registers a kernel for 'wasm' (once), or undefined if our module does not link
 * to the registered wasm backend's memory.
 */
function registrar(tf: Tfjs): Register | undefined {
  const backend = tf.findBackend('wasm') as unknown as XentBackend | null;
  if (backend === null || typeof backend.typedArrayFromHeap !== 'function' || typeof kernelsOn(backend) === 'string') return undefined;
  return (kernelName, impl) => {
    if (tf.getKernel(kernelName, 'wasm') !== undefined) return;
    const kernelFunc = (args: Args) => impl(args.inputs, args.backend as XentBackend, args.attrs ?? {});
    tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc: kernelFunc as unknown as TF.KernelFunc });
  };
}

/**
 * Register every kernel of FUSED_KERNELS for 'wasm' (idempotent) if our module links to the
 * registered wasm backend's memory; whether they are registered (all of them or none).
 */
export function registerWasmFused(tf: Tfjs): boolean {
  const register = registrar(tf);
  if (register === undefined) return false;
  registerCrossEntropy(register);
  registerGelu(register);
  registerLayerNorm(register);
  registerDropoutMask(register);
  return true;
}

function registerGelu(register: Register): void {
  register(K.gelu.forward, (inputs, be) => {
    const { x } = inputs as { x: Info };
    checkFloat32('RosedistGelu', x);
    const y = be.makeOutput([...x.shape], 'float32');
    const n = sizeOf(x);
    if (n > 0) kernels(be).gelu_forward(offset(be, x), offset(be, y), n);
    return y;
  });
  register(K.gelu.backward, (inputs, be) => {
    const { x, dy } = inputs as { x: Info; dy: Info };
    checkFloat32('RosedistGeluGrad', x, dy);
    if (sizeOf(dy) !== sizeOf(x)) throw new Error(`RosedistGeluGrad: dy [${dy.shape}] must have the shape of x [${x.shape}]`);
    const dx = be.makeOutput([...x.shape], 'float32');
    const n = sizeOf(x);
    if (n > 0) kernels(be).gelu_backward(offset(be, x), offset(be, dy), offset(be, dx), n);
    return dx;
  });
}

function registerLayerNorm(register: Register): void {
  register(K.layerNorm.forward, (inputs, be, attrs) => {
    const { x, gamma, beta } = inputs as { x: Info; gamma: Info; beta: Info };
    const [n, c] = rowsOf('RosedistLayerNorm', x, gamma, beta);
    const eps = attrs.eps;
    if (typeof eps !== 'number' || !(eps >= 0)) throw new Error(`RosedistLayerNorm: eps must be a number >= 0, not ${String(eps)}`);
    const y = be.makeOutput([n, c], 'float32');
    const xhat = be.makeOutput([n, c], 'float32');
    const rstd = be.makeOutput([n, 1], 'float32');
    if (n > 0) {
      kernels(be).layernorm_forward(offset(be, x), offset(be, gamma), offset(be, beta), n, c, eps, offset(be, y), offset(be, xhat), offset(be, rstd));
    }
    return [y, xhat, rstd];
  });
  register(K.layerNorm.backward, (inputs, be) => {
    const { dy, xhat, rstd, gamma } = inputs as { dy: Info; xhat: Info; rstd: Info; gamma: Info };
    const [n, c] = rowsOf('RosedistLayerNormGrad', dy, gamma, gamma);
    checkFloat32('RosedistLayerNormGrad', xhat, rstd);
    if (sizeOf(xhat) !== n * c || sizeOf(rstd) !== n) {
      throw new Error(`RosedistLayerNormGrad: xhat [${xhat.shape}] and rstd [${rstd.shape}] do not match dy [${dy.shape}]`);
    }
    const dx = be.makeOutput([n, c], 'float32');
    const dgamma = be.makeOutput([c], 'float32');
    const dbeta = be.makeOutput([c], 'float32');
    if (c > 0) {
      kernels(be).layernorm_backward(
        offset(be, dy),
        offset(be, xhat),
        offset(be, rstd),
        offset(be, gamma),
        n,
        c,
        offset(be, dx),
        offset(be, dgamma),
        offset(be, dbeta),
      );
    }
    return [dx, dgamma, dbeta];
  });
}

function registerDropoutMask(register: Register): void {
  register(K.dropoutMask, (_inputs, be, attrs) => {
    const { shape, seed, rate } = attrs as { shape: number[]; seed: number; rate: number };
    if (!(rate >= 0 && rate < 1) || !Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw new Error(`RosedistDropoutMask: needs a rate in [0, 1) and a 32-bit seed, not ${rate} and ${seed}`);
    }
    const out = be.makeOutput([...shape], 'float32');
    const n = shape.reduce((a, b) => a * b, 1);
    // u < rate, u = x / 2^32 with x an integer, is x < ceil(rate 2^32) (dropout.c).
    const threshold = Math.ceil(rate * 4294967296);
    const keep = Math.fround(1 / (1 - rate));
    if (threshold > 0xffffffff)
      be.typedArrayFromHeap(out).fill(0); // every u < rate
    else if (n > 0) kernels(be).dropout_mask(offset(be, out), n, seed, threshold, keep);
    return out;
  });
}

/** [n, c] of a float32 [n, c] whose rows go with two float32 [c]; throws on anything else. */
function rowsOf(kernel: string, x: Info, a: Info, b: Info): [number, number] {
  const [n, c] = x.shape as [number, number];
  checkFloat32(kernel, x, a, b);
  if (x.shape.length !== 2 || a.shape.length !== 1 || a.shape[0] !== c || b.shape.length !== 1 || b.shape[0] !== c) {
    throw new Error(`${kernel}: needs [n, c], [c] and [c], not [${x.shape}], [${a.shape}] and [${b.shape}]`);
  }
  return [n, c];
}

function sizeOf(t: Info): number {
  return t.shape.reduce((a, b) => a * b, 1);
}

function checkFloat32(kernel: string, ...ts: Info[]): void {
  for (const t of ts) if (t.dtype !== 'float32') throw new Error(`${kernel}: needs float32, not ${t.dtype}`);
}

function registerCrossEntropy(register: Register): void {
  register(K.crossEntropy.forward, (inputs, be) => {
    const { logits, targets } = inputs as { logits: Info; targets: Info };
    const [n, v] = checkShapes('RosedistCrossEntropy', logits, targets);
    const ys = be.typedArrayFromHeap(targets) as Int32Array;
    const bad = ys.find((y) => !(y >= 0 && y < v));
    if (bad !== undefined) throw new Error(`crossEntropySum: the target id ${bad} is not in [0, ${v - 1}]`);
    const probs = be.makeOutput([n, v], 'float32');
    const loss = be.makeOutput([], 'float32'); // may grow the heap: views after it
    const k = kernels(be);
    const sum = n === 0 ? 0 : k.xent_forward(offset(be, logits), offset(be, targets), n, v, offset(be, probs));
    be.typedArrayFromHeap(loss)[0] = sum;
    return [loss, probs];
  });

  register(K.crossEntropy.backward, (inputs, be) => {
    const { probs, targets, dy } = inputs as { probs: Info; targets: Info; dy: Info };
    const [n, v] = checkShapes('RosedistCrossEntropyGrad', probs, targets);
    if (dy.dtype !== 'float32' || dy.shape.length !== 0)
      throw new Error(`RosedistCrossEntropyGrad: dy must be a float32 scalar, not ${dy.dtype} [${dy.shape}]`);
    const g = be.makeOutput([n, v], 'float32');
    const dyValue = be.typedArrayFromHeap(dy)[0] as number;
    if (n > 0) kernels(be).xent_backward(offset(be, probs), offset(be, targets), n, v, dyValue, offset(be, g));
    return g;
  });
}

/** [n, V] of a float32 [n, V] and an int32 [n]; throws on anything else. */
function checkShapes(kernel: string, z: Info, ys: Info): [number, number] {
  const [n, v] = z.shape as [number, number];
  if (z.dtype !== 'float32' || z.shape.length !== 2 || ys.dtype !== 'int32' || ys.shape.length !== 1 || ys.shape[0] !== n || v < 1) {
    throw new Error(`${kernel}: needs float32 [n, V >= 1] and int32 [n], not ${z.dtype} [${z.shape}] and ${ys.dtype} [${ys.shape}]`);
  }
  return [n, v];
}

function kernels(be: XentBackend) {
  const k = kernelsOn(be);
  if (typeof k === 'string') throw new Error(`RosedistCrossEntropy: ${k}`);
  return k;
}

function offset(be: XentBackend, t: Info): number {
  const o = be.dataIdMap.get(t.dataId)?.memoryOffset;
  if (o === undefined) throw new Error('RosedistCrossEntropy: tensor not in the wasm heap');
  return o;
}
