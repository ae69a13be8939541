/**
 * How fast the launcher relays worker output to its console, and with how much memory.
 *
 *   npm run bench:relay -- [--repeat 3] [--cases empty,line10M,line100M,lines1G] [--no-direct]
 *
 * Cases (the worker is test/fixtures/output_worker.ts):
 *   empty     nothing printed: the launcher's start-up and shut-down, subtracted from the others
 *   line10M   one 10 MiB line without a newline until its end (1 rank)
 *   line100M  one 100 MiB line (1 rank)
 *   lines1G   1 GiB in total in 100-byte lines, 512 MiB from each of 2 ranks
 * Each run starts `bin/rosedist.mjs`, reads its stdout here (counting bytes and lines), and samples
 * the launcher's peak RSS (VmHWM in /proc/<pid>/status, the kernel's own high-water mark). The
 * anchor ("direct") is the same worker started without the launcher, its stdout read here: what
 * the pipe and the worker cost alone. Runs are interleaved (launcher, direct, next case, ...)
 * and repeated; the table gives medians and the spread (min–max) of MB/s, i.e. the worker's
 * bytes over the time from the first byte read to the last (start-up, seconds of loading
 * TypeScript on a busy machine, and shut-down are left out: they are the same for every size,
 * the `empty` row).
 * Linear time shows as the same MB/s at 10 and 100 MiB; bounded memory as the same peak RSS.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { packagePath, tsNodeArgs } from '../shared/runtime.js';
import { formatError } from '../shared/errors.js';
import { hideBin, yargs } from '../shared/yargs.js';

const MiB = 1 << 20;
const BIN = packagePath('bin/rosedist.mjs');
const WORKER = packagePath('test/fixtures/output_worker.ts');

interface Case {
  readonly name: string;
  readonly ranks: number;
  readonly bytesPerRank: number;
  readonly workerArgs: readonly string[];
}

const CASES: Readonly<Record<string, Case>> = {
  empty: { name: 'empty', ranks: 1, bytesPerRank: 0, workerArgs: ['--lines', '0'] },
  line10M: { name: 'line10M', ranks: 1, bytesPerRank: 10 * MiB, workerArgs: ['--one-line', String(10 * MiB - 1)] },
  line100M: { name: 'line100M', ranks: 1, bytesPerRank: 100 * MiB, workerArgs: ['--one-line', String(100 * MiB - 1)] },
  lines1G: { name: 'lines1G', ranks: 2, bytesPerRank: 512 * MiB, workerArgs: ['--lines', String(512 * MiB), '--line-bytes', '100'] },
};

interface Run {
  /** From the start to the exit. */
  readonly seconds: number;
  /** From the first byte read to the last. */
  readonly streamSeconds: number;
  /** Bytes read from stdout (the launcher adds its `[rankN]:` prefixes). */
  readonly bytesOut: number;
  readonly lines: number;
  /** Peak RSS of the process we started (the launcher, or the worker when direct), MiB. */
  readonly peakRssMiB: number;
}

function peakRssMiB(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Start one process (node ARGS) with stdout piped here; resolves when it has exited. */
function runOne(args: readonly string[], env: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn(process.execPath, [...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (t: string) => (stderr = (stderr + t).slice(-4000)));
    let first: bigint | undefined;
    let last = 0n;
    let bytesOut = 0;
    let lines = 0;
    let peak = 0;
    // VmHWM is a high-water mark: the last sample before the exit is the peak.
    const sampler = setInterval(() => {
      const v = peakRssMiB(child.pid ?? 0);
      if (v > peak) peak = v;
    }, 20);
    child.stdout.on('data', (chunk: Buffer) => {
      last = process.hrtime.bigint();
      first ??= last;
      bytesOut += chunk.length;
      for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) lines += 1;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      clearInterval(sampler);
      if (code !== 0) return reject(new Error(`${args.join(' ')} exited with ${code}: ${stderr}`));
      const end = process.hrtime.bigint();
      resolve({ seconds: Number(end - start) / 1e9, streamSeconds: Number(last - (first ?? last)) / 1e9, bytesOut, lines, peakRssMiB: peak });
    });
  });
}

function launcherRun(c: Case): Promise<Run> {
  return runOne([BIN, '--nproc-per-node', String(c.ranks), WORKER, ...c.workerArgs], process.env);
}

/** The anchor: the workers alone, in parallel, each piped to us; the slowest counts. */
async function directRun(c: Case): Promise<Run> {
  const runs = await Promise.all(
    Array.from({ length: c.ranks }, (_, rank) => runOne([...tsNodeArgs(), WORKER, ...c.workerArgs], { ...process.env, RANK: String(rank) })),
  );
  return {
    seconds: Math.max(...runs.map((r) => r.seconds)),
    streamSeconds: Math.max(...runs.map((r) => r.streamSeconds)),
    bytesOut: runs.reduce((a, r) => a + r.bytesOut, 0),
    lines: runs.reduce((a, r) => a + r.lines, 0),
    peakRssMiB: Math.max(...runs.map((r) => r.peakRssMiB)),
  };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
}

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

async function main(): Promise<void> {
  const argv = await yargs(hideBin(process.argv))
    .option('repeat', { type: 'number', default: 3, describe: 'runs of each case and anchor' })
    .option('cases', { type: 'string', default: 'empty,line10M,line100M,lines1G', describe: `comma-separated: ${Object.keys(CASES).join(', ')}` })
    .option('direct', { type: 'boolean', default: true, describe: 'run the anchor (the workers without the launcher)' })
    .strict()
    .parseAsync();
  const names = argv.cases.split(',');
  if (!names.includes('empty')) names.unshift('empty');
  const cases = names.map((n) => {
    const c = CASES[n];
    if (c === undefined) throw new Error(`unknown case ${JSON.stringify(n)}: pick from ${Object.keys(CASES).join(', ')}`);
    return c;
  });
  const results = new Map<string, { launcher: Run[]; direct: Run[] }>(cases.map((c) => [c.name, { launcher: [], direct: [] }]));
  for (let r = 0; r < argv.repeat; r += 1) {
    for (const c of cases) {
      const slot = results.get(c.name);
      if (slot === undefined) continue;
      const l = await launcherRun(c);
      // Every byte and line came through (plus the 8-byte prefix of each console line).
      const payload = c.ranks * c.bytesPerRank;
      if (l.bytesOut < payload) throw new Error(`${c.name}: ${l.bytesOut} bytes relayed, expected at least ${payload}`);
      slot.launcher.push(l);
      if (argv.direct) slot.direct.push(await directRun(c));
      process.stderr.write(`run ${r + 1}/${argv.repeat} ${c.name}: launcher ${l.seconds.toFixed(2)} s, streaming ${l.streamSeconds.toFixed(2)} s\n`);
    }
  }
  const rows: string[][] = [];
  for (const c of cases) {
    const slot = results.get(c.name);
    if (slot === undefined) continue;
    const payloadMB = (c.ranks * c.bytesPerRank) / 1e6;
    const rate = (runs: Run[]) => runs.map((x) => payloadMB / x.streamSeconds);
    const lRates = rate(slot.launcher);
    const dRates = rate(slot.direct);
    const fmt = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : '-');
    const isEmpty = c.bytesPerRank === 0;
    rows.push([
      c.name,
      String(c.ranks),
      (payloadMB / 1.048576).toFixed(0),
      median(slot.launcher.map((x) => x.seconds)).toFixed(2),
      isEmpty ? '-' : fmt(median(lRates)),
      isEmpty ? '-' : `${fmt(Math.min(...lRates))}–${fmt(Math.max(...lRates))}`,
      Math.max(...slot.launcher.map((x) => x.peakRssMiB)).toFixed(0),
      String(median(slot.launcher.map((x) => x.lines))),
      isEmpty || !argv.direct ? '-' : fmt(median(dRates)),
      isEmpty || !argv.direct ? '-' : (median(lRates) / median(dRates)).toFixed(2),
    ]);
  }
  process.stdout.write(
    `${table(['case', 'ranks', 'MiB', 'median s', 'MB/s', 'MB/s spread', 'launcher peak RSS MiB', 'console lines', 'direct MB/s', 'launcher/direct'], rows)}\n` +
      `(${argv.repeat} runs each, interleaved; MB/s = the workers' bytes / (last byte read − first byte read); median s = start to exit)\n`,
  );
}

try {
  await main();
} catch (e) {
  process.stderr.write(`bench_relay: ${formatError(e)}\n`);
  process.exitCode = 1;
}
