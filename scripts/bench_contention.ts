/**
 * What the machine itself leaves of 2-vs-1 scaling: the training step of one process alone, and
 * of K copies of it at once with nothing between them (no all-reduce, no launcher), ours against
 * PyTorch's in the same rounds.
 *
 *   npm run bench:contention -- [--copies 2] [--repeat 3] [--steps 30] [--warmup 3]
 *                               [--vocab-size 10000 --n-layers 2 --seq-len 32] [--no-torch]
 *
 * Ours: scripts/bench_backend.ts's step (forward, backward, AdamW, weights written back; wasm,
 * one thread) in its own process; PyTorch: `../shared/anchors/torchrun.sh 1 torch_ddp_ref.py
 * --threads 1` (world size 1, so its all-reduce is a no-op). Each round runs ours alone, ours × K,
 * PyTorch alone, PyTorch × K. Per copy at once / alone is the ceiling on data-parallel scaling
 * K vs 1 that sharing the cores, caches and memory leaves before any communication: a data-parallel
 * run at K workers cannot beat it. Ours also reports CPU ms per step (time waiting for a core not
 * counted), which tells a slower core (shared caches, memory bandwidth, SMT siblings on the host)
 * from a missing one. Median of the rounds; the spread in brackets.
 */
import { randomInt } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, exitCodeOf, formatError, RosedistError } from '../shared/errors.js';
import { packagePath } from '../shared/runtime.js';
import { lastLines, runProcess, runTsProgram } from '../shared/subprocess.js';
import { hideBin, yargs } from '../shared/yargs.js';
import type { BenchCase } from './bench_backend.js';

const ANCHORS = process.env.ROSEDIST_ANCHORS || packagePath('../shared/anchors');

interface Copy {
  readonly tokensPerS: number;
  /** Ours only: median CPU ms of the process per step. */
  readonly cpuMs?: number;
}

/** bench_backend's case without its label and backend (ours runs wasm). */
type Shape = Omit<BenchCase, 'label' | 'backend'>;

async function ours(s: Shape): Promise<Copy> {
  const c: BenchCase = { label: 'contention', backend: 'wasm', ...s };
  const r = await runTsProgram(packagePath('scripts/bench_backend.ts'), ['--case', JSON.stringify(c)], { timeoutMs: 900_000 });
  if (r.code !== 0) throw new RosedistError(`bench_backend --case ended with ${r.code ?? r.signal}: ${lastLines(r.stderr || r.stdout, 4)}`);
  const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as { tokensPerS: number; medianCpuMs: number };
  return { tokensPerS: out.tokensPerS, cpuMs: out.medianCpuMs };
}

async function torch(s: Shape, dir: string): Promise<Copy> {
  const json = join(dir, `torch-${randomInt(1e9)}.json`);
  const args = ['--vocab-size', s.vocabSize, '--n-layers', s.nLayers, '--seq-len', s.seqLen, '--batch-size', s.batchSize, '--num-steps', s.steps];
  const r = await runProcess(
    'sh',
    [
      join(ANCHORS, 'torchrun.sh'),
      '1',
      join(ANCHORS, 'torch_ddp_ref.py'),
      ...args.map(String),
      '--eval-interval',
      String(s.steps + 1),
      '--threads',
      '1',
      '--json',
      json,
    ],
    {
      // A port of its own per copy (torchrun.sh takes MASTER_PORT).
      env: { MASTER_PORT: String(20000 + randomInt(20000)) },
    },
  );
  if (r.code !== 0) throw new RosedistError(`torchrun.sh ended with ${r.code ?? r.signal}: ${lastLines(r.stderr || r.stdout, 4)}`);
  return { tokensPerS: (JSON.parse(readFileSync(json, 'utf8')) as { tokens_per_s: number }).tokens_per_s };
}

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[(xs.length - 1) >> 1] as number;
const spread = (xs: readonly number[], digits: number): string => `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;
const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

async function main(): Promise<void> {
  const argv = await yargs(hideBin(process.argv))
    .option('copies', { type: 'number', default: 2, describe: 'processes at once' })
    .option('repeat', { type: 'number', default: 3, describe: 'rounds' })
    .option('steps', { type: 'number', default: 30 })
    .option('warmup', { type: 'number', default: 3, describe: "ours: steps not timed (PyTorch's anchor times every step)" })
    .option('vocab-size', { type: 'number', default: 10000 })
    .option('n-layers', { type: 'number', default: 2 })
    .option('seq-len', { type: 'number', default: 32 })
    .option('batch-size', { type: 'number', default: 8 })
    .option('torch', { type: 'boolean', default: true, describe: 'also PyTorch (--no-torch: ours only)' })
    .strict()
    .help(false)
    .version(false)
    // One line for a bad flag (not yargs' usage dump): the error goes to main's catch.
    .fail((msg: string | undefined, err: Error | undefined) => {
      throw new ConfigError(
        msg ?? err?.message ?? 'bad arguments',
        'npm run bench:contention -- [--copies 2] [--repeat 3] [--steps 30] [--warmup 3] [model flags] [--no-torch]',
      );
    })
    .parse();
  for (const flag of ['copies', 'repeat', 'steps', 'vocab-size', 'n-layers', 'seq-len', 'batch-size'] as const) {
    const v = argv[flag];
    if (!Number.isSafeInteger(v) || v < 1) throw new ConfigError(`--${flag} ${v} must be a whole number ≥ 1`);
  }
  if (argv.warmup >= argv.steps) throw new ConfigError(`--warmup ${argv.warmup} leaves no step of --steps ${argv.steps}`);
  const shape: Shape = {
    vocabSize: argv['vocab-size'],
    nLayers: argv['n-layers'],
    seqLen: argv['seq-len'],
    batchSize: argv['batch-size'],
    steps: argv.steps,
    warmup: argv.warmup,
  };
  const k = argv.copies;
  const dir = mkdtempSync(join(tmpdir(), 'rosedist-contention-'));
  const runs: Record<string, Copy[][]> = { 'ours alone': [], 'ours at once': [], 'PyTorch alone': [], 'PyTorch at once': [] };
  try {
    for (let round = 1; round <= argv.repeat; round++) {
      console.error(`round ${round}/${argv.repeat} …`);
      runs['ours alone']!.push([await ours(shape)]);
      runs['ours at once']!.push(await Promise.all(Array.from({ length: k }, () => ours(shape))));
      if (!argv.torch) continue;
      runs['PyTorch alone']!.push([await torch(shape, dir)]);
      runs['PyTorch at once']!.push(await Promise.all(Array.from({ length: k }, () => torch(shape, dir))));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // A round's figure: the mean over its copies.
  const perRound = (key: string, f: (c: Copy) => number | undefined): number[] =>
    (runs[key] ?? []).map((copies) => mean(copies.map((c) => f(c) ?? Number.NaN)));
  const lines = [
    `vocab ${shape.vocabSize}, ${shape.nLayers} layers, seq ${shape.seqLen}, batch ${shape.batchSize}; ${argv.repeat} rounds, median (range); ${k} copies at once`,
    '',
    `| impl | alone: tokens/s | ${k} at once: tokens/s per copy | per copy / alone | CPU ms per step alone → at once |`,
    '|---|---|---|---|---|',
  ];
  for (const impl of argv.torch ? ['ours', 'PyTorch'] : ['ours']) {
    const alone = perRound(`${impl} alone`, (c) => c.tokensPerS);
    const together = perRound(`${impl} at once`, (c) => c.tokensPerS);
    const ratio = together.map((t, i) => t / (alone[i] as number));
    const cpu =
      impl === 'ours' ? `${median(perRound('ours alone', (c) => c.cpuMs)).toFixed(1)} → ${median(perRound('ours at once', (c) => c.cpuMs)).toFixed(1)}` : '—';
    lines.push(
      `| ${impl} | ${median(alone).toFixed(0)} (${spread(alone, 0)}) | ${median(together).toFixed(0)} (${spread(together, 0)}) | ${median(ratio).toFixed(2)} (${spread(ratio, 2)}) | ${cpu} |`,
    );
  }
  lines.push('', `per copy / alone: the ceiling on ${k}-vs-1 scaling efficiency that the shared machine leaves (rounds paired: each its own alone)`);
  console.log(lines.join('\n'));
}

main().catch((e: unknown) => {
  console.error(`bench:contention: ${formatError(e)}`);
  process.exitCode = exitCodeOf(e);
});
