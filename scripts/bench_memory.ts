/**
 * The memory estimate (worker/memory.ts) against measured peak RSS: each config trains 2 steps
 * with one evaluation and one checkpoint in a fresh train_minimal process on the wasm backend,
 * under `/usr/bin/time -f %M` (peak RSS, KiB). Prints one row per config and the ratio
 * estimate / measured (above 1: the estimate is on the safe side).
 *
 *   npm run bench:memory [-- --only NAME]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packagePath, tsNodeArgs } from '../shared/runtime.js';
import { estimateMemory, formatBytes } from '../worker/memory.js';

interface Case {
  readonly name: string;
  /** What dominates it. */
  readonly term: string;
  readonly B: number;
  readonly T: number;
  readonly V: number;
  readonly C: number;
  readonly H: number;
  readonly F: number;
  readonly L: number;
}

const CASES: readonly Case[] = [
  { name: 'T (issue 13)', term: 'base', B: 8, T: 32, V: 256, C: 32, H: 2, F: 64, L: 1 },
  { name: 'defaults', term: 'mixed', B: 8, T: 32, V: 10000, C: 128, H: 4, F: 512, L: 2 },
  { name: 'defaults, batch 64', term: 'logits', B: 64, T: 32, V: 10000, C: 128, H: 4, F: 512, L: 2 },
  { name: 'vocab 50257, batch 32', term: 'logits', B: 32, T: 32, V: 50257, C: 32, H: 2, F: 64, L: 1 },
  { name: 'seq 512, 8 heads', term: 'attention', B: 8, T: 512, V: 256, C: 64, H: 8, F: 128, L: 2 },
  { name: 'wide, 4 layers', term: 'activations', B: 32, T: 64, V: 256, C: 512, H: 8, F: 2048, L: 4 },
  { name: 'd_model 1024, vocab 10000', term: 'parameters', B: 2, T: 16, V: 10000, C: 1024, H: 8, F: 4096, L: 4 },
];

function args(c: Case, dir: string): string[] {
  return [
    '--batch-size',
    String(c.B),
    '--seq-len',
    String(c.T),
    '--max-position-embeddings',
    String(Math.max(c.T, 128)),
    '--vocab-size',
    String(c.V),
    '--d-model',
    String(c.C),
    '--n-heads',
    String(c.H),
    '--d-ff',
    String(c.F),
    '--n-layers',
    String(c.L),
    '--backend',
    'wasm',
    '--num-steps',
    '2',
    '--eval-interval',
    '2',
    '--checkpoint-interval',
    '2',
    // 5 B samples: 4 B to train on, B to evaluate (one full batch).
    '--dataset',
    `toy:${5 * c.B}`,
    '--log-file',
    join(dir, `${c.name.replace(/\W+/g, '_')}.log`),
    '--checkpoint-path',
    join(dir, `${c.name.replace(/\W+/g, '_')}.safetensors`),
  ];
}

const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : undefined;
const dir = mkdtempSync(join(tmpdir(), 'rosedist-bench-memory-'));
const rows: string[][] = [['config', 'dominant term', 'parameters', 'estimate', 'peak RSS', 'estimate / RSS', 'tensors est.', 'wasm heap', 'tensors / heap']];
const ratios: number[] = [];
const heapRatios: number[] = [];
try {
  for (const c of CASES.filter((x) => only === undefined || x.name.includes(only))) {
    const e = estimateMemory({
      vocabSize: c.V,
      maxPositionEmbeddings: Math.max(c.T, 128),
      nLayers: c.L,
      nHeads: c.H,
      dModel: c.C,
      dFf: c.F,
      batchSize: c.B,
      seqLen: c.T,
    });
    const r = spawnSync(
      '/usr/bin/time',
      ['-f', 'peak_rss_kib=%M', process.execPath, ...tsNodeArgs(), packagePath('worker/train_minimal.ts'), ...args(c, dir)],
      {
        encoding: 'utf8',
        env: { ...process.env, ROSEDIST_RUN_ID: 'bench-memory' },
      },
    );
    const m = /peak_rss_kib=(\d+)/.exec(r.stderr);
    // The trainer's last lines: "memory: peak RSS ... wasm heap 1.23 GiB (..." (worker/memory.ts).
    const heap = /wasm heap ([\d.]+) (MiB|GiB)/.exec(r.stdout);
    if (r.status !== 0 || !m || !heap) {
      rows.push([
        c.name,
        c.term,
        e.numParams.toLocaleString('en-US'),
        formatBytes(e.totalBytes),
        `failed (${r.status})`,
        '',
        formatBytes(e.tensorBytes),
        '',
        '',
      ]);
      process.stderr.write(r.stderr.slice(-2000));
      continue;
    }
    const rss = Number(m[1]) * 1024;
    const heapBytes = Number(heap[1]) * 2 ** (heap[2] === 'GiB' ? 30 : 20);
    ratios.push(e.totalBytes / rss);
    heapRatios.push(e.tensorBytes / heapBytes);
    rows.push([
      c.name,
      c.term,
      e.numParams.toLocaleString('en-US'),
      formatBytes(e.totalBytes),
      formatBytes(rss),
      (e.totalBytes / rss).toFixed(2),
      formatBytes(e.tensorBytes),
      formatBytes(heapBytes),
      (e.tensorBytes / heapBytes).toFixed(2),
    ]);
    process.stderr.write(`${rows.at(-1)?.join(' | ')}\n`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
for (const r of rows) console.log(`| ${r.map((x, i) => x.padEnd(widths[i]!)).join(' | ')} |`);
function spread(label: string, xs: readonly number[]): void {
  if (xs.length === 0) return;
  const sorted = [...xs].sort((a, b) => a - b);
  console.log(
    `${label}: min ${sorted[0]!.toFixed(2)}, median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(2)}, max ${sorted.at(-1)!.toFixed(2)} over ${xs.length} configs`,
  );
}
console.log('');
spread('estimate / peak RSS', ratios);
spread('estimated tensors / wasm heap', heapRatios);
