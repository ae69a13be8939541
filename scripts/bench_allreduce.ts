/**
 * All-reduce benchmark of the ZeroMQ ring, optionally side by side with PyTorch's Gloo.
 *
 *   npm run bench:allreduce -- --nproc 2 [--sizes 4K,64K,1M,16M,64M,gpt] [--iters K] [--json FILE]
 *                              [--gloo] [--anchors DIR] [--repeat R] [--transport stream|zmq|both]
 *                              [--algorithm auto|ring|gather] [--segment-bytes B] [--kernels]
 *                              [--worker-node-args=--single-threaded-gc]
 *                              [--netns n1,n2] [--compression none|bf16|fp16]
 *                              [--topology flat|hierarchical|flat,hierarchical]
 *
 * Per size (float32 elements; "gpt" = the default GPT's gradient, 2,973,184 floats): median time
 * of one all-reduce (the slowest rank of each iteration, as the anchor gloo_allreduce.py
 * measures), algorithm bandwidth (bytes / time) and bus bandwidth (algbw · 2(N−1)/N, the
 * nccl-tests convention), p90, V8 collections per iteration (perf_hooks 'gc' entries) and whether
 * the result was right; printed as a table and written as JSON {"world_size", "rows": [{"bytes",
 * "median_ms", "p90_ms", "gc_per_iter", "gc_ms_per_iter", "algbw_GBps", "busbw_GBps", "correct"}]}.
 * --transport zmq|stream|both picks the ring's data sockets (default zmq, as training runs use;
 * both: each round runs both).
 * With --gloo (needs Debian's python3-torch and the anchors beside the checkout,
 * ../shared/anchors, or --anchors DIR) the Gloo anchor runs on the same sizes after each of ours,
 * --repeat times, interleaved (the machine is shared); a summary prints per size the medians over
 * rounds, the rounds' spread and the ratio ours/Gloo of bus bandwidth. --kernels first times the
 * reduction kernels alone.
 *
 * --netns n1,n2 runs across hosts made of network namespaces (../shared/cluster/netns-cluster.sh;
 * root): --nproc workers in each, rank 0's host first, addresses read from /etc/netns/<ns>/hosts;
 * the Gloo anchor then runs through torch.distributed.run on each host (--nnodes, GLOO_SOCKET_IFNAME
 * eth0). --compression sends our all-reduce's messages at 16 bits (comm/wire.ts); the correctness
 * check then allows the 16-bit rounding of the exact sum (small integers are exact in both).
 *
 * --topology flat,hierarchical runs each round once per topology, interleaved (comm/hierarchical.ts:
 * within the host, across hosts, within the host; needs --netns, or several pretend hosts, with
 * --nproc ≥ 2 each). Its host and cross-host groups are subgroups, which carry their data over
 * ZeroMQ whatever --transport says (the world group's own collectives, and flat, use --transport).
 * With --compression only the cross-host hop of the hierarchical all-reduce is compressed.
 *
 * --malloc-tuning (default on; --no-malloc-tuning to turn off) starts both ours and Gloo with
 * MALLOC_TUNING below: ZeroMQ receives every message into a fresh malloc'd buffer, freed only
 * when V8 collects it, and glibc's default trimming hands those pages back to the kernel, so
 * the next receives fault them in again (~2,500 page faults per 64 MiB received); with it
 * ~10% less time at 64 MiB, 4 processes. A launcher should start its workers with the same.
 *
 * --worker-node-args adds Node/V8 flags to our ranks only (the launcher adds none): with
 * `--single-threaded-gc`, V8's GC helper threads, which spent ~15 ms of CPU per rank per 64 MiB
 * all-reduce (2 processes; the received messages are external memory that forces a full GC every
 * ~64 MiB), no longer compete with the ranks and ZeroMQ's I/O threads for the cores.
 */
import { spawnSync } from 'node:child_process';
import { PerformanceObserver } from 'node:perf_hooks';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readWorkerEnv, workerEnvVars, type WorkerEnv } from '../shared/env.js';
import { formatError } from '../shared/errors.js';
import { freePort } from '../launcher/ports.js';
import { packagePath, tsNodeArgs } from '../shared/runtime.js';
import { lastLines, runProcess } from '../shared/subprocess.js';
import { hideBin, yargs } from '../shared/yargs.js';
import { initProcessGroup, type AllReduceAlgorithm, type DataTransportKind } from '../worker/comm/index.js';
import { createTopologyGroup, type AllReduceTopology } from '../worker/comm/hierarchical.js';
import { createReducer } from '../worker/comm/reduce.js';
import { WIRE_FORMATS, type Compression, type WireFormat } from '../worker/comm/wire.js';
import { netnsAddress, onHost } from './netns_hosts.js';

interface Row {
  bytes: number;
  /** p50 of the iterations' times (each the slowest rank's). */
  median_ms: number;
  /** p90 of the same (ours only; the Gloo anchor reports the median). */
  p90_ms?: number;
  /** V8 collections per iteration and their ms per iteration, on the rank with most (ours only). */
  gc_per_iter?: number;
  gc_ms_per_iter?: number;
  algbw_GBps: number;
  busbw_GBps: number;
  correct: boolean;
}
interface Result {
  world_size: number;
  rows: Row[];
}

const GPT_FLOATS = 2_973_184;
const MALLOC_TUNING = 'glibc.malloc.trim_threshold=268435456:glibc.malloc.mmap_threshold=33554432:glibc.malloc.top_pad=16777216';
/** The anchors live beside the checkout (as bench_train.ts finds them); --anchors overrides. */
const DEFAULT_ANCHORS = packagePath('../shared/anchors');

/** Why the Gloo anchor cannot run from `dir`, or undefined when it can. */
function glooMissing(dir: string): string | undefined {
  if (!existsSync(join(dir, 'torchrun.sh')) || !existsSync(join(dir, 'gloo_allreduce.py'))) return `no Gloo anchor at ${dir} (pass --anchors DIR)`;
  if (spawnSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore' }).status !== 0) {
    return '/usr/bin/python3 cannot import torch (apt-get install python3-torch libopenblas0-pthread)';
  }
  return undefined;
}

function parseSize(s: string): number {
  if (s === 'gpt') return GPT_FLOATS * 4;
  const m = /^(\d+)([KMG]?)$/.exec(s);
  if (m === null) throw new Error(`bad size ${JSON.stringify(s)}: use e.g. 4K, 1M, 64M, 1000 or gpt`);
  return Number(m[1]) * { '': 1, K: 1 << 10, M: 1 << 20, G: 1 << 30 }[m[2] as '' | 'K' | 'M' | 'G'];
}

/** Iterations per size, as the Gloo script chooses them. */
function itersFor(bytes: number): number {
  return bytes <= 64 << 10 ? 200 : bytes <= 1 << 20 ? 50 : bytes <= 16 << 20 ? 20 : 8;
}

/** The q-quantile of `xs` (linear between the nearest ranks; q = 0.5: the median). */
const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (pos - lo);
};
const median = (xs: number[]): number => quantile(xs, 0.5);

/** Counts V8's collections (count, ms) while on: every GC this process makes, from perf_hooks. */
class GcMeter {
  count = 0;
  ms = 0;
  private on = false;
  private readonly observer = new PerformanceObserver((list) => {
    if (!this.on) return;
    for (const e of list.getEntries()) {
      this.count += 1;
      this.ms += e.duration;
    }
  });
  constructor() {
    this.observer.observe({ entryTypes: ['gc'] });
  }
  start(): void {
    this.count = 0;
    this.ms = 0;
    this.on = true;
  }
  stop(): void {
    this.on = false;
  }
  close(): void {
    this.observer.disconnect();
  }
}

/** One rank of the benchmark: measures every size and, on rank 0, prints the result as JSON. */
async function worker(
  sizes: number[],
  iters: number | undefined,
  segmentBytes: number | undefined,
  dataTransport: DataTransportKind,
  allReduceAlgorithm: AllReduceAlgorithm | 'auto',
  compression: Compression | undefined,
  topology: AllReduceTopology,
): Promise<void> {
  const env = readWorkerEnv();
  const world = await initProcessGroup(env, { segmentBytes, dataTransport, allReduceAlgorithm });
  // A topology that does not fit stops every rank with its one line; the world's sockets must not keep it alive.
  const { pg } = await createTopologyGroup(world, env, topology).catch(async (e: unknown) => {
    await world.close();
    throw e;
  });
  const n = pg.worldSize;
  const rows: Row[] = [];
  const gc = new GcMeter();
  for (const bytes of sizes) {
    const buf = new Float32Array(bytes / 4);
    const count = iters ?? itersFor(bytes);
    const warm = Math.max(2, Math.floor(count / 10));
    const times = new Float64Array(count);
    for (let it = 0; it < warm + count; it++) {
      buf.fill(pg.rank + 1);
      await pg.barrier();
      if (it === warm) gc.start();
      const t0 = performance.now();
      await pg.allReduce(buf, 'sum', compression);
      const dt = (performance.now() - t0) / 1000;
      if (it >= warm) times[it - warm] = dt;
    }
    // GC entries arrive asynchronously: let the observer run before reading the counts.
    await new Promise((r) => setImmediate(r));
    gc.stop();
    const want = (n * (n + 1)) / 2; // exact at 16 bits too for the worlds benchmarked (n ≤ 15)
    const correct = new Float64Array([buf.every((x) => x === want) ? 1 : 0]);
    const gcs = new Float64Array([gc.count / count, gc.ms / count]);
    await pg.allReduce(times, 'max'); // the slowest rank defines each iteration
    await pg.allReduce(correct, 'min');
    await pg.allReduce(gcs, 'max');
    const med = median(Array.from(times));
    const algbw = bytes / med / 1e9;
    rows.push({
      bytes,
      median_ms: med * 1e3,
      p90_ms: quantile(Array.from(times), 0.9) * 1e3,
      gc_per_iter: gcs[0],
      gc_ms_per_iter: gcs[1],
      algbw_GBps: algbw,
      busbw_GBps: (algbw * 2 * (n - 1)) / n,
      correct: correct[0] === 1,
    });
  }
  gc.close();
  if (pg.rank === 0) process.stdout.write(`BENCH ${JSON.stringify({ world_size: n, rows })}\n`);
  await pg.close();
}

/** Run `cmd` and resolve with its stdout; reject with its stderr on a non-zero exit. */
async function run(cmd: string, args: string[], env: Readonly<Record<string, string | undefined>>): Promise<string> {
  const r = await runProcess(cmd, args, { env });
  if (r.code !== 0) throw new Error(`${cmd} exited with ${r.code ?? r.signal}: ${lastLines(r.stderr, 5)}`);
  return r.stdout;
}

async function runOurs(
  nproc: number,
  hosts: string[] | undefined,
  sizes: string,
  iters: number | undefined,
  segmentBytes: number | undefined,
  extraEnv: Record<string, string>,
  nodeArgs: string[],
  transport: DataTransportKind,
  algorithm: string,
  compression: string,
  topology: AllReduceTopology,
  pretendHosts: number,
): Promise<Result> {
  const port = hosts === undefined ? await freePort('127.0.0.1') : 20000 + Math.floor(Math.random() * 20000);
  const self = packagePath('scripts/bench_allreduce.ts');
  const args = [
    ...nodeArgs,
    ...tsNodeArgs(),
    self,
    '--worker',
    '--sizes',
    sizes,
    ...(iters ? ['--iters', String(iters)] : []),
    ...(segmentBytes ? ['--segment-bytes', String(segmentBytes)] : []),
    '--transport',
    transport,
    '--algorithm',
    algorithm,
    '--compression',
    compression,
    '--topology',
    topology,
  ];
  const nodes: (string | undefined)[] = hosts ?? Array.from({ length: pretendHosts }, () => undefined);
  const masterAddr = hosts === undefined ? '127.0.0.1' : netnsAddress(hosts[0] as string);
  const outs = await Promise.all(
    nodes.flatMap((ns, nodeRank) =>
      Array.from({ length: nproc }, (_, localRank) => {
        const e: WorkerEnv = {
          rank: nodeRank * nproc + localRank,
          localRank,
          worldSize: nodes.length * nproc,
          localWorldSize: nproc,
          nodeRank,
          nnodes: nodes.length,
          masterAddr,
          masterPort: port,
          runId: `bench-${port}`,
          restartCount: 0,
          maxRestarts: 0,
          errorFile: undefined,
          nodeId: ns ?? `bench-${nodeRank}`,
          secret: undefined,
          launcherPid: undefined,
          tmpDir: undefined,
        };
        const [cmd, argv] = onHost(ns, process.execPath, args);
        return run(cmd, argv, { ...extraEnv, ...workerEnvVars(e) });
      }),
    ),
  );
  const line = outs[0].split('\n').find((l) => l.startsWith('BENCH '));
  if (line === undefined) throw new Error('rank 0 printed no result');
  return JSON.parse(line.slice(6)) as Result;
}

async function runGloo(anchors: string, nproc: number, hosts: string[] | undefined, sizes: number[], extraEnv: Record<string, string>): Promise<Result> {
  const dir = mkdtempSync(join(tmpdir(), 'gloo-'));
  const file = join(dir, 'gloo.json');
  if (hosts === undefined) {
    const port = await freePort('127.0.0.1');
    await run('sh', [join(anchors, 'torchrun.sh'), String(nproc), join(anchors, 'gloo_allreduce.py'), '--sizes', sizes.join(','), '--json', file], {
      ...extraEnv,
      MASTER_PORT: String(port),
    });
  } else {
    // torchrun.sh is for one host; across hosts, torch.distributed.run on each, as torchrun.sh starts it.
    const port = 20000 + Math.floor(Math.random() * 20000);
    const master = netnsAddress(hosts[0] as string);
    await Promise.all(
      hosts.map((ns, nodeRank) => {
        const args = [
          '-m',
          'torch.distributed.run',
          '--redirects',
          '1',
          '--tee',
          '1',
          '--log_dir',
          join(dir, `logs-${ns}`),
          `--nnodes=${hosts.length}`,
          `--node_rank=${nodeRank}`,
          `--nproc_per_node=${nproc}`,
          `--master_addr=${master}`,
          `--master_port=${port}`,
          join(anchors, 'gloo_allreduce.py'),
          '--sizes',
          sizes.join(','),
          '--json',
          file,
        ];
        const [cmd, argv] = onHost(ns, '/usr/bin/python3', args);
        return run(cmd, argv, { ...extraEnv, GLOO_SOCKET_IFNAME: 'eth0' });
      }),
    );
  }
  return JSON.parse(readFileSync(file, 'utf8')) as Result;
}

const human = (b: number): string => (b >= 1 << 20 ? `${+(b / (1 << 20)).toFixed(2)} MiB` : b >= 1024 ? `${+(b / 1024).toFixed(2)} KiB` : `${b} B`);

function table(title: string, r: Result): string {
  const ours = r.rows.some((row) => row.p90_ms !== undefined);
  const lines = ours
    ? [
        title,
        '| size | bytes | p50 ms | p90 ms | p90/p50 | GCs/iter | GC ms/iter | algbw GB/s | busbw GB/s | correct |',
        '|---|---|---|---|---|---|---|---|---|---|',
      ]
    : [title, '| size | bytes | median ms | algbw GB/s | busbw GB/s | correct |', '|---|---|---|---|---|---|'];
  for (const row of r.rows) {
    const extra = ours
      ? ` ${row.p90_ms!.toFixed(3)} | ${(row.p90_ms! / row.median_ms).toFixed(2)} | ${row.gc_per_iter!.toFixed(2)} | ${row.gc_ms_per_iter!.toFixed(2)} |`
      : '';
    lines.push(
      `| ${human(row.bytes)} | ${row.bytes} | ${row.median_ms.toFixed(3)} |${extra} ${row.algbw_GBps.toFixed(3)} | ${row.busbw_GBps.toFixed(3)} | ${row.correct} |`,
    );
  }
  return lines.join('\n');
}

function kernelTable(): string {
  const n = 16 << 20; // 64 MiB of float32, in 1 MiB segments like the ring's
  const seg = 1 << 18;
  const buf = Float32Array.from({ length: n }, (_, i) => i % 101);
  const msg = new Float32Array(seg).fill(1);
  const lines = ['reduction kernels, 64 MiB float32 in 1 MiB segments (GB/s of buffer):', '| kernel | sum | max | median ms (sum) |', '|---|---|---|---|'];
  for (const kind of ['wasm', 'js'] as const) {
    const r = createReducer(kind);
    const time = (op: 'sum' | 'max'): number => {
      const ts: number[] = [];
      for (let rep = 0; rep < 5; rep++) {
        const t0 = performance.now();
        for (let s = 0; s < n; s += seg) r.combine(msg, buf.subarray(s, s + seg), op);
        ts.push(performance.now() - t0);
      }
      return median(ts);
    };
    const sum = time('sum');
    const max = time('max');
    lines.push(`| ${kind} | ${((n * 4) / sum / 1e6).toFixed(2)} | ${((n * 4) / max / 1e6).toFixed(2)} | ${sum.toFixed(1)} |`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const argv = await yargs(hideBin(process.argv))
    .option('nproc', { type: 'number', default: 2, describe: 'processes (ranks)' })
    .option('sizes', { type: 'string', default: '4K,64K,1M,16M,64M,gpt', describe: 'comma-separated sizes in bytes (K, M suffixes; gpt)' })
    .option('iters', { type: 'number', describe: 'timed iterations per size (default: as the Gloo script)' })
    .option('json', { type: 'string', describe: 'write the (last) result of ours here' })
    .option('gloo', { type: 'boolean', default: false, describe: 'also run the Gloo anchor, interleaved' })
    .option('repeat', { type: 'number', default: 1, describe: 'rounds of ours (and Gloo)' })
    .option('anchors', { type: 'string', default: DEFAULT_ANCHORS, describe: 'folder of the PyTorch anchors (torchrun.sh, gloo_allreduce.py)' })
    .option('segment-bytes', { type: 'number', describe: 'ring segment size (default 1 MiB)' })
    .option('malloc-tuning', { type: 'boolean', default: true, describe: 'start both with GLIBC_TUNABLES that keep freed receive buffers mapped' })
    .option('kernels', { type: 'boolean', default: false, describe: 'time the reduction kernels first' })
    .option('worker-node-args', {
      type: 'string',
      default: '',
      describe: 'space-separated Node/V8 flags for our ranks, e.g. --worker-node-args=--single-threaded-gc',
    })
    .option('algorithm', { type: 'string', default: 'auto', describe: 'all-reduce algorithm: auto (by size), ring or gather' })
    .option('transport', {
      type: 'string',
      default: 'zmq',
      describe: "the ring's data sockets: zmq (the default of training runs), stream, or both (each round runs both, interleaved)",
    })
    .option('loopback-hosts', {
      type: 'number',
      default: 1,
      describe: 'without --netns: split the ranks into this many pretend hosts on loopback (tcp:// between them), --nproc each',
    })
    .option('netns', { type: 'string', describe: 'comma-separated namespace hosts (netns-cluster.sh), --nproc workers on each' })
    .option('compression', { type: 'string', default: 'none', describe: "our all-reduce's messages: none (float32), bf16 or fp16" })
    .option('topology', {
      type: 'string',
      default: 'flat',
      describe: 'flat, hierarchical, or both comma-separated (each round runs each, interleaved)',
    })
    .option('worker', { type: 'boolean', default: false, hidden: true })
    .strict()
    .parseAsync();
  const sizes = argv.sizes
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const bytes = sizes.map(parseSize);
  if (bytes.some((b) => b % 4 !== 0)) throw new Error('sizes must be multiples of 4 bytes (float32)');
  if (!['stream', 'zmq', 'both'].includes(argv.transport)) throw new Error('--transport must be stream, zmq or both');
  const transports: DataTransportKind[] = argv.transport === 'both' ? ['stream', 'zmq'] : [argv.transport as DataTransportKind];
  if (!['auto', 'ring', 'gather'].includes(argv.algorithm)) throw new Error('--algorithm must be auto, ring or gather');
  if (argv.compression !== 'none' && !WIRE_FORMATS.includes(argv.compression as WireFormat)) throw new Error('--compression must be none, bf16 or fp16');
  const compression: Compression | undefined = argv.compression === 'none' ? undefined : { format: argv.compression as WireFormat };
  const topologies = argv.topology.split(',').map((t) => t.trim()) as AllReduceTopology[];
  if (topologies.length === 0 || !topologies.every((t) => t === 'flat' || t === 'hierarchical'))
    throw new Error('--topology must be flat, hierarchical or flat,hierarchical');
  if (argv.worker)
    return worker(bytes, argv.iters, argv['segment-bytes'], transports[0], argv.algorithm as AllReduceAlgorithm | 'auto', compression, topologies[0]);
  const hosts = argv.netns
    ?.split(',')
    .map((h) => h.trim())
    .filter(Boolean);
  if (hosts !== undefined && hosts.length < 2) throw new Error('--netns needs 2 or more hosts, e.g. --netns n1,n2');
  const pretend = argv['loopback-hosts'];
  if (!Number.isInteger(pretend) || pretend < 1 || (hosts !== undefined && pretend !== 1))
    throw new Error('--loopback-hosts must be 1 or more, without --netns');
  const world = argv.nproc * (hosts?.length ?? pretend);
  if (!Number.isInteger(argv.nproc) || argv.nproc < 1 || world < 2) throw new Error('--nproc must be 2 or more (1 or more per host with --netns)');
  if (argv.kernels) console.log(`${kernelTable()}\n`);
  const extraEnv: Record<string, string> = argv['malloc-tuning'] ? { GLIBC_TUNABLES: MALLOC_TUNING } : {};
  const nodeArgs = argv['worker-node-args'].split(' ').filter(Boolean);
  console.log(`malloc tuning: ${argv['malloc-tuning'] ? `GLIBC_TUNABLES=${MALLOC_TUNING}` : 'off'}; node args of our ranks: ${nodeArgs.join(' ') || 'none'}\n`);
  let gloo = argv.gloo;
  const missing = gloo ? glooMissing(argv.anchors) : undefined;
  if (missing !== undefined) {
    console.log(`Gloo anchor skipped: ${missing}\n`);
    gloo = false;
  }
  // Every (transport, topology) pair is one of ours, keyed "stream" or "stream hierarchical".
  const variants = transports.flatMap((t) => topologies.map((topology) => ({ t, topology, key: topology === 'flat' ? t : `${t} ${topology}` })));
  const ours = new Map<string, Result[]>(variants.map((v) => [v.key, []]));
  const glooRuns: Result[] = [];
  // Rounds interleave every implementation (the machine is shared): ours per transport, then Gloo.
  for (let rep = 0; rep < argv.repeat; rep++) {
    for (const { t, topology, key } of variants) {
      const r = await runOurs(
        argv.nproc,
        hosts,
        bytes.join(','),
        argv.iters,
        argv['segment-bytes'],
        extraEnv,
        nodeArgs,
        t,
        argv.algorithm,
        argv.compression,
        topology,
        pretend,
      );
      ours.get(key)!.push(r);
      const sockets = `${t === 'stream' ? 'stream sockets' : 'ZeroMQ'}${compression ? `, ${compression.format} on the wire` : ''}`;
      const what =
        topology === 'flat'
          ? `rosedist ring all-reduce (${sockets})`
          : `rosedist hierarchical all-reduce (within host, across hosts, within host: subgroups over ZeroMQ; world ${sockets})`;
      const where = hosts ? ` (${hosts.join(', ')})` : argv['loopback-hosts'] > 1 ? ` (${argv['loopback-hosts']} pretend hosts on loopback)` : '';
      console.log(table(`${what}, world size ${world}${where}, round ${rep + 1}`, r));
    }
    if (gloo) {
      const g = await runGloo(argv.anchors, argv.nproc, hosts, bytes, extraEnv);
      glooRuns.push(g);
      console.log(table(`gloo all-reduce, world size ${world}, round ${rep + 1}`, g));
    }
  }
  console.log(
    `\nsummary over ${argv.repeat} round(s): medians of the rounds' p50 and p90 (p50 range over rounds)${gloo ? "; ratio: ours/Gloo bus bandwidth, median of the rounds' ratios (>1: ours faster)" : ''}`,
  );
  const head = [
    'size',
    ...variants.flatMap(({ key }) => [`${key} p50 ms (range)`, `${key} p90 ms`, 'p90/p50', ...(gloo ? ['vs Gloo'] : [])]),
    ...(gloo ? ['gloo p50 ms (range)'] : []),
    ...transports.filter(() => topologies.length > 1).map((t) => `${t}: flat / hierarchical p50`),
  ];
  console.log(`| ${head.join(' | ')} |\n|${head.map(() => '---').join('|')}|`);
  const range = (xs: number[]): string => `${median(xs).toFixed(3)} (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`;
  bytes.forEach((b, i) => {
    const cells = [human(b)];
    for (const { key } of variants) {
      const rs = ours.get(key)!;
      const p50 = rs.map((r) => r.rows[i].median_ms);
      const p90 = median(rs.map((r) => r.rows[i].p90_ms!));
      cells.push(range(p50), p90.toFixed(3), (p90 / median(p50)).toFixed(2));
      if (gloo) cells.push(median(rs.map((r, k) => r.rows[i].busbw_GBps / glooRuns[k].rows[i].busbw_GBps)).toFixed(2));
    }
    if (gloo) cells.push(range(glooRuns.map((r) => r.rows[i].median_ms)));
    // >1: hierarchical faster; the median over rounds of each round's ratio (rounds are interleaved).
    for (const t of topologies.length > 1 ? transports : []) {
      const flat = ours.get(t)!;
      const hier = ours.get(`${t} hierarchical`)!;
      cells.push(median(flat.map((r, k) => r.rows[i].median_ms / hier[k].rows[i].median_ms)).toFixed(2));
    }
    console.log(`| ${cells.join(' | ')} |`);
  });
  const last = ours.get(variants[0].key)!;
  if (argv.json !== undefined) writeFileSync(argv.json, `${JSON.stringify(last[last.length - 1], null, 1)}\n`);
}

main().catch((e: unknown) => {
  console.error(formatError(e));
  process.exitCode = 1;
});
