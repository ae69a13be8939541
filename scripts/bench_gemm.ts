/**
 * Our wasm kernels against tfjs's, interleaved in one process: GFLOP/s of every matrix product
 * the GPT runs (forward and backward) for each config, ms of the summed cross-entropy's loss and
 * gradient at the step's logits (tfjs's ops vs our fused kernels, kernels/xent.c), and ms of one
 * AdamW step (JavaScript loop vs our SIMD kernel) over the GPT's parameters.
 *
 *   npm run bench:kernels -- [--rounds 7] [--min-ms 20] [--configs defaults,long] [--adamw-only] [--xent-only]
 *
 * Baseline per product, as the trainer ran it before our GEMM (worker/tf_wasm_kernels.ts):
 *   - plain 2-D products, with or without bias: tfjs's own kernel (XNNPACK);
 *   - transposed forms: tf.transpose of the operand, then XNNPACK (tfjs's own transposed path is
 *     10-30x slower: the model never used it);
 *   - batched (attention) products: one XNNPACK call per slice when a slice is big enough,
 *     tfjs's scalar loop otherwise (the previous BatchMatMul replacement).
 * A third side is our GEMM's plain-SIMD build (kernels.wasm: multiply, then add) beside the build
 * the trainer runs (kernels_fma.wasm where the runtime takes relaxed SIMD: fused multiply-adds).
 * Each round times the sides in rotating order, over at least --min-ms of CPU time each (this
 * process's, so that time spent waiting for a core on a shared machine is not counted); the table
 * shows medians and the min-max spread over rounds, and the medians of the per-round ratios. On a
 * shared machine the absolute figures still drop (caches and cores are shared); ratios hold better.
 * `ours/ceiling`: our median against the core's 128-bit SIMD ceiling measured in the same process
 * (scripts/wasm_peak.ts: independent multiply-adds on registers), how close to the core it runs.
 */
import { ConfigError, exitCodeOf, formatError } from '../shared/errors.js';
import { hideBin, yargs } from '../shared/yargs.js';
import { initBackend, ourFusedKernels, tf } from '../worker/tf.js';
import { stockWasmKernel } from '../worker/tf_wasm_kernels.js';
import { gemmFor, type GemmBackend } from '../worker/wasm_gemm.js';
import { kernelBuild } from '../worker/kernels/module.js';
import { cpuMs, wasmPeak } from './wasm_peak.js';
import { AdamW, ADAMW_DEFAULTS } from '../worker/optim.js';
import { GPT } from '../worker/model/gpt.js';
import { crossEntropySum, crossEntropySumOps } from '../worker/model/ops.js';

interface Product {
  readonly op: string;
  readonly batch: number; // 1: a 2-D product
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly transposeA: boolean;
  readonly transposeB: boolean;
  readonly bias: boolean;
}

interface Config {
  readonly name: string;
  readonly vocab: number;
  readonly layers: number;
  readonly seqLen: number;
}

const CONFIGS: Record<string, Config> = {
  defaults: { name: 'defaults (V 10000, T 32)', vocab: 10000, layers: 2, seqLen: 32 },
  long: { name: 'V 256, L 4, T 128', vocab: 256, layers: 4, seqLen: 128 },
};
const BATCH = 8;
const D = 128;
const FF = 512;
const HEADS = 4;

/** Every distinct product of one training step (model/gpt.ts, attention.ts, ops.ts). */
function products(c: Config): Product[] {
  const rows = BATCH * c.seqLen;
  const T = c.seqLen;
  const dh = D / HEADS;
  const bh = BATCH * HEADS;
  const p = (op: string, batch: number, m: number, n: number, k: number, tA = false, tB = false, bias = false): Product => ({
    op,
    batch,
    m,
    n,
    k,
    transposeA: tA,
    transposeB: tB,
    bias,
  });
  const linear = (name: string, cin: number, cout: number, bias: boolean): Product[] => [
    p(`${name} fwd`, 1, rows, cout, cin, false, false, bias),
    p(`${name} dx`, 1, rows, cin, cout, false, true),
    p(`${name} dW`, 1, cin, cout, rows, true, false),
  ];
  return [
    p('qkv fwd (x3)', 1, rows, D, D, false, false, true),
    p('qkv dx', 1, rows, D, 3 * D, false, true),
    p('qkv dW', 1, D, 3 * D, rows, true, false),
    p('attn q@kT', bh, T, T, dh),
    p('attn P@v', bh, T, dh, T),
    p('attn dv=PT@dY', bh, T, dh, T, true, false),
    p('attn dP=dY@vT', bh, T, T, dh, false, true),
    p('attn dq=dS@k', bh, T, dh, T, false, true),
    p('attn dk=dST@q', bh, T, dh, T, true, false),
    ...linear('attn out', D, D, true),
    ...linear('ff1', D, FF, true),
    ...linear('ff2', FF, D, true),
    ...linear('lm head', D, c.vocab, false),
  ];
}

function randomTensor(shape: number[], seed: number): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    v[i] = x / 2 ** 32 - 0.5;
  }
  return tf.tensor(v, shape);
}

type Run = () => void;

/** The sides of one product: ours (the registered kernels), our plain-SIMD build, and the previous path. */
function sides(p: Product): { ours: Run; oursPlain: Run; theirs: Run; dispose: () => void } {
  const shapeA = p.transposeA ? [p.k, p.m] : [p.m, p.k];
  const shapeB = p.transposeB ? [p.n, p.k] : [p.k, p.n];
  const lead = p.batch > 1 ? [p.batch] : [];
  const a = randomTensor([...lead, ...shapeA], 1);
  const b = randomTensor([...lead, ...shapeB], 2);
  const bias = p.bias ? randomTensor([p.n], 3) : undefined;
  const backend = tf.backend();
  const fused = stockWasmKernel('_FusedMatMul');
  const plain = p.batch > 1 ? (stockWasmKernel('BatchMatMul:xnnpack-slices') ?? stockWasmKernel('BatchMatMul')) : stockWasmKernel('BatchMatMul');
  if (fused === undefined || plain === undefined) throw new ConfigError('our GEMM is not installed (ROSEDIST_STOCK_WASM_KERNELS set?)');
  const perm = p.batch > 1 ? [0, 2, 1] : [1, 0];
  // Kernels run synchronously on wasm: the tidy's end disposes a finished result.
  const ours = () =>
    tf.tidy(() => {
      if (bias !== undefined) tf.fused.matMul({ a, b, bias, transposeA: p.transposeA, transposeB: p.transposeB });
      else tf.matMul(a, b, p.transposeA, p.transposeB);
    });
  const theirs = () =>
    tf.tidy(() => {
      // As tfjs-core hands them to the kernels: rank 3.
      const to3d = (t: tf.Tensor) => (t.rank === 3 ? t : tf.reshape(t, [1, ...t.shape]));
      const aa = to3d(p.transposeA ? tf.transpose(a, perm) : a);
      const bb = to3d(p.transposeB ? tf.transpose(b, perm) : b);
      const attrs = { transposeA: false, transposeB: false, activation: 'linear' };
      const info = bias !== undefined ? fused({ inputs: { a: aa, b: bb, bias }, attrs, backend }) : plain({ inputs: { a: aa, b: bb }, attrs, backend });
      tf.engine()
        .makeTensorFromTensorInfo(info as tf.TensorInfo)
        .dispose();
    });
  const plainGemm = gemmFor(tf, backend as unknown as GemmBackend, 'plain');
  if (typeof plainGemm === 'string') throw new ConfigError(`our plain-SIMD GEMM did not load: ${plainGemm}`);
  const oursPlain = () => {
    const info = plainGemm.matMul(a, b, p.transposeA, p.transposeB, bias);
    if (info === undefined) throw new Error(`our GEMM does not take ${p.op}`);
    tf.engine().makeTensorFromTensorInfo(info).dispose();
  };
  return { ours, oursPlain, theirs, dispose: () => tf.dispose([a, b, ...(bias ? [bias] : [])]) };
}

/** CPU ms per call of f, over at least minMs of it. */
function timeIt(f: Run, minMs: number): number {
  let reps = 0;
  const t0 = cpuMs();
  let t = t0;
  do {
    f();
    reps++;
    t = cpuMs();
  } while (t - t0 < minMs);
  return (t - t0) / reps;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)] as number;
};
const fmtSpread = (xs: number[], digits = 1) => `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)})`;

function benchProducts(c: Config, rounds: number, minMs: number, ceiling: number | string): string[] {
  const lines: string[] = [];
  // Warm-up over every product first: the first one measured would otherwise pay for the JIT
  // and for the heap's first growth.
  for (const p of products(c)) {
    const s = sides(p);
    for (const f of [s.ours, s.oursPlain, s.theirs]) timeIt(f, minMs);
    s.dispose();
  }
  for (const p of products(c)) {
    const s = sides(p);
    const flops = 2 * p.batch * p.m * p.n * p.k;
    // warm-up: XNNPACK builds its operator, the GEMM touches its scratch
    for (const f of [s.ours, s.oursPlain, s.theirs]) f();
    const runs = [s.theirs, s.oursPlain, s.ours];
    const gflops: number[][] = runs.map(() => []);
    const vsTfjs: number[] = [];
    const vsPlain: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const ms = runs.map(() => 0);
      for (let i = 0; i < runs.length; i++) {
        const at = (i + r) % runs.length; // rotate the order from round to round
        ms[at] = timeIt(runs[at]!, minMs);
      }
      ms.forEach((t, i) => gflops[i]!.push(flops / t / 1e6));
      vsTfjs.push(ms[0]! / ms[2]!);
      vsPlain.push(ms[1]! / ms[2]!);
    }
    s.dispose();
    const shape = `${p.batch > 1 ? `${p.batch}x ` : ''}${p.m}x${p.k}${p.transposeA ? 'ᵀ' : ''} · ${p.k}x${p.n}${p.transposeB ? 'ᵀ' : ''}${p.bias ? ' +b' : ''}`;
    const [tfjsG, plainG, oursG] = gflops as [number[], number[], number[]];
    lines.push(
      `| ${c.name} | ${p.op} | ${shape} | ${fmtSpread(tfjsG)} | ${fmtSpread(plainG)} | ${fmtSpread(oursG)} | ${median(vsTfjs).toFixed(2)}x | ${median(vsPlain).toFixed(2)}x | ${typeof ceiling === 'number' ? `${((median(oursG) / ceiling) * 100).toFixed(0)}%` : '—'} |`,
    );
  }
  return lines;
}

/**
 * Loss + logits gradient of the summed cross-entropy over a step's predicted rows (batch x (T - 1))
 * of each config: ms, tfjs's ops against ours, interleaved.
 */
function benchCrossEntropy(configs: Config[], rounds: number, minMs: number): string[] {
  const lines: string[] = [];
  for (const c of configs) {
    const rows = BATCH * (c.seqLen - 1);
    const z = randomTensor([rows, c.vocab], 4) as tf.Tensor2D;
    const targets = Int32Array.from({ length: rows }, (_, i) => (i * 7919) % c.vocab);
    const run = (xent: typeof crossEntropySum) => () => void tf.tidy(() => tf.grad((x: tf.Tensor) => xent(x as tf.Tensor2D, targets))(z));
    const [ours, theirs] = [run(crossEntropySum), run(crossEntropySumOps)];
    ours();
    theirs();
    const [tOurs, tTheirs, ratio]: number[][] = [[], [], []];
    for (let r = 0; r < rounds; r++) {
      const [first, second] = r % 2 === 0 ? [ours, theirs] : [theirs, ours];
      const t1 = timeIt(first, minMs);
      const t2 = timeIt(second, minMs);
      const [to, tt] = r % 2 === 0 ? [t1, t2] : [t2, t1];
      tOurs.push(to);
      tTheirs.push(tt);
      ratio.push(tt / to);
    }
    z.dispose();
    lines.push(`| ${c.name} | ${rows} x ${c.vocab} | ${fmtSpread(tTheirs, 2)} | ${fmtSpread(tOurs, 2)} | ${median(ratio).toFixed(2)}x |`);
  }
  return lines;
}

function benchAdamW(rounds: number): string[] {
  const lines: string[] = [];
  for (const c of Object.values(CONFIGS)) {
    const model = new GPT({ vocabSize: c.vocab, maxPositionEmbeddings: 128, nLayers: c.layers, nHeads: HEADS, dModel: D, dFf: FF, dropout: 0.1 }, 0);
    const n = model.numParams;
    model.dispose();
    const js = new AdamW(n, ADAMW_DEFAULTS, { simd: false });
    const simd = new AdamW(n, ADAMW_DEFAULTS);
    const params = Float32Array.from({ length: n }, (_, i) => Math.sin(i));
    const grads = Float32Array.from({ length: n }, (_, i) => Math.cos(i) * 1e-2);
    const tJs: number[] = [];
    const tSimd: number[] = [];
    for (let r = 0; r < rounds; r++) {
      tJs.push(timeIt(() => js.step(params, grads), 100));
      tSimd.push(timeIt(() => simd.step(params, grads), 100));
    }
    lines.push(`| ${c.name} | ${n.toLocaleString('en-US')} | ${fmtSpread(tJs, 2)} | ${fmtSpread(tSimd, 2)} | ${(median(tJs) / median(tSimd)).toFixed(2)}x |`);
  }
  return lines;
}

async function main(): Promise<void> {
  const argv = await yargs(hideBin(process.argv))
    .option('rounds', { type: 'number', default: 7, describe: 'interleaved rounds per product' })
    .option('min-ms', { type: 'number', default: 20, describe: 'time each side at least this long per round' })
    .option('configs', { type: 'string', default: 'defaults,long', describe: 'comma-separated: defaults, long' })
    .option('adamw-only', { type: 'boolean', default: false })
    .option('xent-only', { type: 'boolean', default: false, describe: 'only the cross-entropy table' })
    .strict()
    .parseAsync();
  if (!Number.isInteger(argv.rounds) || argv.rounds < 1) throw new ConfigError(`--rounds must be a positive integer, got ${argv.rounds}`);
  if (!(argv['min-ms'] > 0)) throw new ConfigError(`--min-ms must be positive, got ${argv['min-ms']}`);
  const configs = argv.configs
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((name) => {
      const c = CONFIGS[name];
      if (c === undefined) throw new ConfigError(`--configs: unknown config "${name}"`, 'use defaults and/or long');
      return c;
    });
  await initBackend('wasm');
  if (ourFusedKernels()?.crossEntropy === undefined) throw new ConfigError('our kernels are not installed (ROSEDIST_STOCK_WASM_KERNELS set?)');
  if (!argv['adamw-only']) {
    console.log('Summed cross-entropy, loss + gradient, ms, median (min-max) over rounds; ratio: median of tfjs/ours per round');
    console.log('| config | logits | tfjs ops | ours | tfjs/ours |');
    console.log('|---|---|---|---|---|');
    for (const line of benchCrossEntropy(configs, argv.rounds, argv['min-ms'])) console.log(line);
    console.log('');
  }
  if (argv['xent-only']) return;
  if (!argv['adamw-only']) {
    // The core's ceiling for 128-bit SIMD (scripts/wasm_peak.ts), before and after the products:
    // on a shared machine it moves with the load as the products do.
    const build = kernelBuild();
    const peakKind = build === 'plain' ? 'plain' : 'fma';
    const ceilings = [wasmPeak(peakKind)];
    console.log(`GFLOP/s, median (min-max) over rounds; ratios: medians over rounds; ours: the ${build} build`);
    console.log('| config | product | shape (M x K · K x N) | tfjs (before) | ours, plain SIMD | ours | ours/tfjs | ours/plain | ours/ceiling |');
    console.log('|---|---|---|---|---|---|---|---|---|');
    for (const c of configs) for (const line of benchProducts(c, argv.rounds, argv['min-ms'], ceilings[0] as number | string)) console.log(line);
    ceilings.push(wasmPeak(peakKind));
    const plainCeiling = wasmPeak('plain');
    const show = (x: number | string): string => (typeof x === 'number' ? `${x.toFixed(1)} GFLOP/s` : x);
    console.log(
      `ceiling of 128-bit wasm SIMD on this core (registers only, best of 5; scripts/wasm_peak.ts): ${peakKind === 'fma' ? 'fused multiply-add' : 'multiply + add'} ${ceilings.map(show).join(' before, ')} after the products${peakKind === 'fma' ? `; multiply + add (the plain build's pair) ${show(plainCeiling)}` : ''}`,
    );
  }
  console.log('\nAdamW step, ms, median (min-max)');
  console.log('| config | parameters | JavaScript | SIMD | JS/SIMD |');
  console.log('|---|---|---|---|---|');
  for (const line of benchAdamW(argv.rounds)) console.log(line);
}

main().catch((e: unknown) => {
  console.error(`bench: ${formatError(e)}`);
  process.exitCode = exitCodeOf(e);
});
