/**
 * Training throughput of the GPT per tfjs backend: forward + backward + AdamW + writing the
 * weights back, as the trainer does each step, after a few warm-up steps.
 *
 *   npm run bench:backend -- [--backends wasm,cpu] [--steps 10] [--warmup 2] [--cpu-steps 3]
 *
 * Backends: wasm, cpu, tensorflow, wasm-plain (wasm with our kernels' plain-SIMD build, no fused
 * multiply-adds: ROSEDIST_PLAIN_SIMD=1) and wasm-stock (wasm without the kernel replacements of
 * worker/tf_wasm_kernels.ts, to measure what they bring).
 *
 * Two configurations (batch 8): the defaults (vocab 10000, 2 layers, seq 32) and a long-sequence
 * one (--vocab-size 256 --n-layers 4 --seq-len 128). Each (config, backend) runs in its own
 * process, so backends do not share a heap and peak RSS is per run. Prints a table: fastest and
 * median step time (the fastest is the least disturbed by other processes on a shared machine),
 * tokens/s over all measured steps, peak RSS, and the speed ratio of each backend to the first.
 * The cpu backend is slow on the long config: it runs --cpu-steps steps there.
 */
import { fileURLToPath } from 'node:url';
import { ConfigError, exitCodeOf, formatError } from '../shared/errors.js';
import { runTsProgram } from '../shared/subprocess.js';
import { hideBin, yargs } from '../shared/yargs.js';

/** One case, as `--case` takes it (JSON); scripts/bench_contention.ts runs it too. */
export interface BenchCase {
  readonly label: string;
  readonly backend: 'wasm' | 'wasm-plain' | 'wasm-stock' | 'cpu' | 'tensorflow';
  readonly vocabSize: number;
  readonly nLayers: number;
  readonly seqLen: number;
  readonly batchSize: number;
  readonly steps: number;
  readonly warmup: number;
}

interface BenchResult {
  readonly device: string;
  readonly minStepMs: number;
  readonly medianStepMs: number;
  /** Median CPU time of this process per step: on a shared machine, waiting for a core is not counted. */
  readonly medianCpuMs: number;
  readonly tokensPerS: number;
  readonly peakRssMb: number;
  readonly finalLoss: number;
}

const CONFIGS = [
  { label: 'defaults (V 10000, L 2, T 32)', vocabSize: 10000, nLayers: 2, seqLen: 32 },
  { label: 'V 256, L 4, T 128', vocabSize: 256, nLayers: 4, seqLen: 128 },
] as const;

/** One case, in this process: prints its BenchResult as JSON on the last line. */
async function runCase(c: BenchCase): Promise<void> {
  const { initBackend } = await import('../worker/tf.js');
  const { GPT } = await import('../worker/model/gpt.js');
  const { AdamW, ADAMW_DEFAULTS } = await import('../worker/optim.js');
  if (c.backend === 'wasm-stock') process.env.ROSEDIST_STOCK_WASM_KERNELS = '1';
  if (c.backend === 'wasm-plain') process.env.ROSEDIST_PLAIN_SIMD = '1';
  const info = await initBackend(c.backend === 'wasm-stock' || c.backend === 'wasm-plain' ? 'wasm' : c.backend);
  const model = new GPT(
    {
      vocabSize: c.vocabSize,
      maxPositionEmbeddings: 128,
      nLayers: c.nLayers,
      nHeads: 4,
      dModel: 128,
      dFf: 512,
      dropout: 0.1,
    },
    0,
  );
  const optimizer = new AdamW(model.numParams, ADAMW_DEFAULTS);
  const params = new Float32Array(model.numParams);
  const grads = new Float32Array(model.numParams);
  model.readFlat(params);
  const n = c.batchSize * c.seqLen;
  // Random tokens from a fixed LCG: the toy data of the original, without a dataset module.
  const ids = new Int32Array(n);
  let x = 12345;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    ids[i] = x % c.vocabSize;
  }
  const batch = { inputIds: ids, attentionMask: new Int32Array(n).fill(1), labels: ids, batchSize: c.batchSize, seqLen: c.seqLen };
  const times: number[] = [];
  const cpuTimes: number[] = [];
  const cpuMs = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  let loss = Number.NaN;
  for (let step = 0; step < c.warmup + c.steps; step++) {
    const t0 = performance.now();
    const c0 = cpuMs();
    loss = model.trainStep(batch, step, grads).loss;
    optimizer.step(params, grads);
    model.writeFlat(params);
    if (step >= c.warmup) {
      times.push(performance.now() - t0);
      cpuTimes.push(cpuMs() - c0);
    }
  }
  const total = times.reduce((a, b) => a + b, 0);
  const sorted = [...times].sort((a, b) => a - b);
  const result: BenchResult = {
    device: info.device,
    minStepMs: sorted[0] ?? Number.NaN,
    medianStepMs: sorted[Math.floor(sorted.length / 2)] ?? Number.NaN,
    medianCpuMs: [...cpuTimes].sort((a, b) => a - b)[Math.floor(cpuTimes.length / 2)] ?? Number.NaN,
    tokensPerS: (n * times.length) / (total / 1000),
    peakRssMb: process.resourceUsage().maxRSS / 1024,
    finalLoss: loss,
  };
  model.dispose();
  console.log(JSON.stringify(result));
}

/** Run one case in a child process; undefined (with a line on stderr) if it failed. */
async function spawnCase(c: BenchCase, timeoutS: number): Promise<BenchResult | undefined> {
  const script = fileURLToPath(import.meta.url);
  const r = await runTsProgram(script, ['--case', JSON.stringify(c)], { stderr: 'inherit', timeoutMs: timeoutS * 1000 });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  try {
    if (r.code !== 0) throw new Error(r.signal ? `killed by ${r.signal} (timeout ${timeoutS} s?)` : `exit code ${r.code}`);
    return JSON.parse(last) as BenchResult;
  } catch (e) {
    console.error(`bench: ${c.backend} on ${c.label} failed: ${e instanceof Error ? e.message : String(e)}`);
    return undefined;
  }
}

function row(cells: string[], widths: number[]): string {
  return `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
}

async function main(): Promise<void> {
  const argv = await yargs(hideBin(process.argv))
    .option('backends', { type: 'string', default: 'wasm,cpu', describe: 'comma-separated: wasm, cpu, tensorflow' })
    .option('steps', { type: 'number', default: 10, describe: 'measured steps per case' })
    .option('warmup', { type: 'number', default: 2, describe: 'unmeasured steps first' })
    .option('cpu-steps', { type: 'number', default: 3, describe: 'measured steps of the cpu backend on the long config' })
    .option('batch-size', { type: 'number', default: 8 })
    .option('timeout', { type: 'number', default: 900, describe: 'seconds per case' })
    .option('case', { type: 'string', hidden: true })
    .strict()
    .parseAsync();
  if (argv.case !== undefined) return runCase(JSON.parse(argv.case) as BenchCase);

  for (const flag of ['steps', 'warmup', 'cpu-steps', 'batch-size', 'timeout'] as const) {
    const v = argv[flag];
    if (!Number.isInteger(v) || v < (flag === 'warmup' ? 0 : 1)) throw new ConfigError(`--${flag} must be a positive integer, got ${v}`);
  }
  const backends = argv.backends
    .split(',')
    .map((b) => b.trim())
    .filter((b) => b !== '');
  for (const b of backends) {
    if (!['wasm', 'wasm-plain', 'wasm-stock', 'cpu', 'tensorflow'].includes(b)) {
      throw new ConfigError(`--backends: unknown backend "${b}"`, 'use wasm, wasm-plain, wasm-stock, cpu or tensorflow');
    }
  }
  const widths = [29, 10, 26, 15, 11, 8, 9, 8];
  const lines = [
    row(['config', 'backend', 'device', 'step ms min/med', 'CPU ms med', 'tokens/s', 'peak RSS', 'vs first'], widths),
    row(
      widths.map((w) => '-'.repeat(w)),
      widths,
    ),
  ];
  for (const cfg of CONFIGS) {
    let first: number | undefined;
    for (const backend of backends as BenchCase['backend'][]) {
      const long = cfg.seqLen > 32;
      const c: BenchCase = {
        ...cfg,
        backend,
        batchSize: argv['batch-size'],
        warmup: backend === 'cpu' && long ? 1 : argv.warmup,
        steps: backend === 'cpu' && long ? Math.min(argv.steps, argv['cpu-steps']) : argv.steps,
      };
      console.error(`bench: ${backend} on ${cfg.label}: ${c.warmup} warm-up + ${c.steps} steps ...`);
      const r = await spawnCase(c, argv.timeout);
      if (r === undefined) {
        lines.push(row([cfg.label, backend, 'failed', '', '', '', '', ''], widths));
        continue;
      }
      first ??= r.tokensPerS;
      lines.push(
        row(
          [
            cfg.label,
            backend,
            r.device,
            `${r.minStepMs.toFixed(0)} / ${r.medianStepMs.toFixed(0)}`,
            r.medianCpuMs.toFixed(0),
            r.tokensPerS.toFixed(0),
            `${r.peakRssMb.toFixed(0)} MB`,
            `${(r.tokensPerS / first).toFixed(3)}x`,
          ],
          widths,
        ),
      );
    }
  }
  console.log(lines.join('\n'));
}

main().catch((e: unknown) => {
  console.error(`bench: ${formatError(e)}`);
  process.exitCode = exitCodeOf(e);
});
