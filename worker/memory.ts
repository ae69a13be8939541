/**
 * How much memory a training config needs, estimated from its shapes before the model is built,
 * so that a config that cannot fit is refused in one line (with the estimate) instead of crashing
 * late: a wasm heap past its 4 GiB ("memory access out of bounds", "Aborted()"), a typed array
 * too long for V8, or the machine running out of memory.
 *
 * The estimate, in float32 values (4 bytes each), with N = B*T rows, R = B*(T-1) predicted rows:
 *   backend tensors  K_W*P: weights, their gradients, and the copies made while new weights are
 *                    written into the model (writeFlat) and gradients are taken
 *                    + per block: K_C*N*C + K_F*N*F (activations kept for backprop, LayerNorm and
 *                      GELU temporaries, their gradients) + K_S*B*H*T*T (attention scores, softmax,
 *                      dropout mask, their gradients)
 *                    + head: K_V*R*V (logits, log-softmax, one-hot targets, their gradients)
 *                    + the wasm heap's initial 16 MiB
 *   arrays           K_P*P: the flat weights, gradients+loss buffer, AdamW's m and v (and their
 *                    copies in the AdamW kernel's own wasm memory), and the checkpoint image
 *                    (weights, m, v) while it is written
 *   base             Node and tfjs before any of this (RSS)
 * The K factors are fitted to measured runs (scripts/bench_memory.ts prints estimate against
 * measured wasm heap and peak RSS for configs dominated by each term). The wasm heap keeps its
 * high-water mark and fragments, so they exceed a count of live tensors.
 */
import { totalmem } from 'node:os';
import { ConfigError } from '../shared/errors.js';
import type { TrainConfig } from './config.js';
import { countParams } from './model/params.js';

/** Calibrated factors (see the module comment), fitted with our wasm GEMM and AdamW kernels. */
const K_W = 2.7;
const K_C = 23;
const K_F = 23;
const K_S = 10;
const K_V = 5.8;
const K_P = 11;
/** The wasm heap before any tensor, bytes. */
const HEAP_BASE_BYTES = 16 * 2 ** 20;
/** Node + tfjs (wasm) at start, bytes (RSS of the smallest model: 195 MiB, of which 16 MiB heap). */
const BASE_BYTES = 176 * 2 ** 20;

/** wasm32: a 32-bit address space. tfjs-backend-wasm lets its heap grow to it. */
export const WASM_HEAP_LIMIT_BYTES = 4 * 2 ** 30;
/** V8's longest typed array on 64-bit (elements); the flat parameter copies are one each. */
const MAX_TYPED_ARRAY_LENGTH = 2 ** 32 - 1;

export interface MemoryEstimate {
  readonly numParams: number;
  /** Bytes of backend tensors at the peak of one training step (the wasm heap, for wasm). */
  readonly tensorBytes: number;
  /** Bytes of arrays outside the backend (flat weights, optimizer state, checkpoint image). */
  readonly arrayBytes: number;
  /** Peak resident set size of one worker, bytes. */
  readonly totalBytes: number;
}

type Shape = Pick<TrainConfig, 'vocabSize' | 'maxPositionEmbeddings' | 'nLayers' | 'nHeads' | 'dModel' | 'dFf' | 'batchSize' | 'seqLen'>;

/** The estimate for one worker. Pure arithmetic in float64: fine for sizes far past any limit. */
export function estimateMemory(c: Shape): MemoryEstimate {
  const numParams = countParams({ ...c, dropout: 0 });
  const n = c.batchSize * c.seqLen;
  const r = c.batchSize * (c.seqLen - 1);
  const perBlock = K_C * n * c.dModel + K_F * n * c.dFf + K_S * c.batchSize * c.nHeads * c.seqLen * c.seqLen;
  const tensorBytes = HEAP_BASE_BYTES + 4 * (K_W * numParams + c.nLayers * perBlock + K_V * r * c.vocabSize);
  const arrayBytes = 4 * K_P * numParams;
  return { numParams, tensorBytes, arrayBytes, totalBytes: BASE_BYTES + tensorBytes + arrayBytes };
}

/** Bytes as "1.2 GiB" / "340 MiB". */
export function formatBytes(bytes: number): string {
  if (bytes >= 2 ** 40) return `${(bytes / 2 ** 40).toPrecision(3)} TiB`;
  if (bytes >= 2 ** 30) return `${(bytes / 2 ** 30).toPrecision(3)} GiB`;
  return `${Math.ceil(bytes / 2 ** 20)} MiB`;
}

/** What to shrink, for the largest term: the hint. */
function shrinkHint(c: Shape): string {
  const n = c.batchSize * c.seqLen;
  const terms: [number, string][] = [
    [K_V * c.batchSize * (c.seqLen - 1) * c.vocabSize, 'lower --batch-size or --vocab-size'],
    [K_S * c.nLayers * c.batchSize * c.nHeads * c.seqLen * c.seqLen, 'lower --batch-size or --seq-len'],
    [c.nLayers * n * (K_C * c.dModel + K_F * c.dFf), 'lower --batch-size, --d-model or --d-ff'],
  ];
  terms.sort((a, b) => b[0] - a[0]);
  const params = (K_W + K_P) * countParams({ ...c, dropout: 0 });
  if (params > (terms[0]?.[0] ?? 0)) return 'lower --vocab-size, --d-model, --d-ff or --n-layers';
  return `${terms[0]?.[1] ?? 'lower --batch-size'}; --grad-accum-steps keeps the tokens per step`;
}

/**
 * Refuse a config that cannot fit (ConfigError, one line with the estimate): on the wasm backend
 * its tensors past the 4 GiB heap; on any backend `localWorkers` workers past this machine's
 * memory, or a parameter copy past V8's longest typed array.
 */
export function checkMemory(c: Shape, backend: 'wasm' | 'cpu' | 'tensorflow', localWorkers: number, machineBytes = totalmem()): MemoryEstimate {
  const e = estimateMemory(c);
  const what = `this config (${e.numParams.toLocaleString('en-US')} parameters, batch ${c.batchSize} x ${c.seqLen} tokens, vocab ${c.vocabSize})`;
  if (e.numParams > MAX_TYPED_ARRAY_LENGTH) {
    throw new ConfigError(`${what} has more parameters than one array can hold (${MAX_TYPED_ARRAY_LENGTH.toLocaleString('en-US')})`, shrinkHint(c));
  }
  if (backend === 'wasm' && e.tensorBytes > WASM_HEAP_LIMIT_BYTES) {
    throw new ConfigError(
      `${what} needs about ${formatBytes(e.tensorBytes)} of tensors per training step, more than the wasm backend's 4 GiB heap`,
      shrinkHint(c),
    );
  }
  const machine = e.totalBytes * localWorkers;
  if (machine > machineBytes) {
    const each = localWorkers > 1 ? ` (${formatBytes(e.totalBytes)} per worker x ${localWorkers} workers)` : '';
    throw new ConfigError(
      `${what} needs about ${formatBytes(machine)} of memory${each}, more than this machine's ${formatBytes(machineBytes)}`,
      `${shrinkHint(c)}${localWorkers > 1 ? ', or run fewer workers per node' : ''}`,
    );
  }
  return e;
}

/** The line rank 0 logs at the end: the estimate next to what the run took (peak RSS, wasm heap). */
export function memoryLine(e: MemoryEstimate, peakRssBytes: number, heapBytes: number | undefined): string {
  const heap = heapBytes === undefined ? '' : `, wasm heap ${formatBytes(heapBytes)} (estimated tensors ${formatBytes(e.tensorBytes)})`;
  return `memory: peak RSS ${formatBytes(peakRssBytes)} (estimated ${formatBytes(e.totalBytes)})${heap}`;
}
