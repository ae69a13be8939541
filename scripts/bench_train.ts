/**
 * Training benchmark: train_ddp through the real launcher, side by side with PyTorch DDP (Gloo, CPU).
 *
 *   npm run bench:train -- --nproc 1,2 [training options] [--steps S] [--warmup W] [--json FILE]
 *                          [--repeat R] [--no-torch] [--keep] [--compare-overlap | --alternate-overlap]
 *                          [--netns n1,n2 [--nnodes 1,2]]
 *
 * For each world size N in --nproc, ours runs as `rosedist --nproc-per-node N train_ddp [options]`
 * with its log, checkpoint and a `--profile` trace in a temporary directory (logs/ is not touched)
 * and eval/checkpoint intervals past the last step (both still run once at the end, outside the
 * steps). From the trace (scripts/train_trace.ts): tokens/s of the training steps after the first
 * W (all ranks together; the slowest rank's time), the all-reduce's share of step time, each
 * phase's ms per step, and each worker's peak RSS. Then, when Debian's python3-torch is installed,
 * `../shared/anchors/torchrun.sh N torch_ddp_ref.py` on the same model and batch (1 thread per
 * process, as ours); it times every step (no warm-up skipped) and its peak RSS per worker comes
 * from a sitecustomize hook (getrusage at exit). Without torch or the anchors, one line says so.
 *
 * Prints a table (rows: ours/PyTorch per N), ours/PyTorch ratios, the 2-vs-1 scaling efficiency
 * tps(2) / (2 · tps(1)) when 1 and 2 are both given, and writes --json:
 *   { rows: [{ impl, world_size, tokens_per_s, tokens_per_s_per_worker, allreduce_share,
 *              peak_rss_mb, config, phase_ms? }], ratios, scaling_efficiency,
 *     world_size, tokens_per_s, peak_rss_mb (ours, when one N) }
 * The machine is shared and small: compare within one invocation; --repeat R runs R rounds
 * (ours and PyTorch interleaved) and each row is the round with the median tokens/s.
 *
 * --compare-overlap: with 2 or more workers, ours runs twice per round, with --overlap (row
 * `rosedist`) and --no-overlap (row `rosedist --no-overlap`, train_ddp's default), in alternating
 * order. Overlap is then reported two ways: from the trace (train_trace.ts OverlapSummary: the
 * share of the buckets' flight time that fell before backward ended), and A/B, the fraction of
 * the unbucketed all-reduce that overlap took off the step: 1 - (exposed all-reduce with overlap,
 * i.e. its `allreduce` phase: waiting after backward) / (the all-reduce phase without overlap).
 *
 * --alternate-overlap: each run of ours overlaps its odd steps only (ROSEDIST_BENCH_ALTERNATE_OVERLAP,
 * ddp_overlap.ts), and the trace compares the two kinds of step within the run, under the same
 * load: median step time of each (a step's time: its slowest rank), ratio, and the A/B overlap
 * from their all-reduce phases. On a busy machine this is the steadier comparison.
 *
 * --netns n1,n2 runs across hosts made of network namespaces (../shared/cluster/netns-cluster.sh;
 * root): --nproc K (one value) workers per host, on the first H hosts for each H in --nnodes
 * (default 1 and all of them). Ours: one launcher per host (`--nnodes H --node-rank r
 * --master-addr <first host> --secret-file`, a fresh secret); PyTorch: torch.distributed.run on
 * each host (GLOO_SOCKET_IFNAME eth0), as torchrun.sh starts it. H = 1 runs inside the first host.
 * The scaling line then reads tps(2 hosts) / (2 · tps(1 host)).
 */
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, RosedistError, exitCodeOf, formatError } from '../shared/errors.js';
import { freePort } from '../launcher/ports.js';
import { packagePath } from '../shared/runtime.js';
import { lastLines, runProcess } from '../shared/subprocess.js';
import { parseTrainConfig, type TrainConfig } from '../worker/config.js';
import type { MergedTrace } from '../worker/observe/profiler.js';
import { summariseTrace, type OverlapSummary, type TraceSummary } from './train_trace.js';
import { netnsAddress, netnsPort, onHost } from './netns_hosts.js';

type Impl = 'rosedist' | 'rosedist --no-overlap' | 'pytorch';

interface Row {
  impl: Impl;
  world_size: number;
  /** Hosts the run spanned (1 on loopback). */
  hosts: number;
  tokens_per_s: number;
  tokens_per_s_per_worker: number;
  /** null: PyTorch's anchor does not time its all-reduce apart. */
  allreduce_share: number | null;
  /** Ours: the gradient all-reduce split into the collective and waiting for the slower rank (train_trace.ts). */
  allreduce_split_ms?: { collective: number; wait: number };
  /** Largest per-worker peak, MiB; null when not measured. */
  peak_rss_mb: number | null;
  config: Record<string, unknown>;
  phase_ms?: Record<string, number>;
  /** tokens_per_s of every round (--repeat), in run order. */
  tokens_per_s_rounds?: number[];
  /** Ours with --overlap: from the trace (train_trace.ts). */
  overlap?: OverlapSummary;
  /** Ours with --alternate-overlap: odd (overlapped) and even steps of the run (train_trace.ts). */
  alternating?: TraceSummary['alternating'];
  /** --alternate-overlap: every round's median step time without overlap / with it, in run order. */
  alternating_speedup_rounds?: number[];
}

interface BenchArgs {
  nprocs: number[];
  steps: number;
  warmup: number;
  json: string | undefined;
  torch: boolean;
  keep: boolean;
  repeat: number;
  compareOverlap: boolean;
  alternateOverlap: boolean;
  /** --netns: the namespace hosts; --nproc is then per host. */
  hosts: string[] | undefined;
  /** --nnodes: how many of `hosts` each configuration uses. */
  nnodes: number[];
  /** Everything else: train_ddp's own options, passed on as given. */
  trainArgs: string[];
}

/** Options the bench sets itself; given by the user they would break the timing or touch logs/. */
const CONTROLLED = ['num-steps', 'eval-interval', 'checkpoint-interval', 'checkpoint-path', 'log-file', 'profile', 'resume'];
/** Set by --compare-overlap on each run. */
const OVERLAP_FLAGS = ['overlap', 'no-overlap'];
/** The anchors beside the checkout, or $ROSEDIST_ANCHORS (as scripts/links_bench.sh sets it). */
const ANCHORS = process.env.ROSEDIST_ANCHORS || packagePath('../shared/anchors');
/** torchrun.sh execs this interpreter (Debian's python3-torch lives there). */
const ANCHOR_PYTHON = '/usr/bin/python3';
const USAGE =
  'npm run bench:train -- --nproc 1,2 [training options] [--steps S] [--warmup W] [--repeat R] [--json FILE] [--no-torch] [--keep] [--compare-overlap] [--netns n1,n2 [--nnodes 1,2]]';

function parseArgs(argv: readonly string[]): BenchArgs {
  const out: BenchArgs = {
    nprocs: [1],
    steps: 30,
    warmup: 2,
    json: undefined,
    torch: true,
    keep: false,
    repeat: 1,
    compareOverlap: false,
    alternateOverlap: false,
    hosts: undefined,
    nnodes: [],
    trainArgs: [],
  };
  const int = (flag: string, text: string | undefined, min: number): number => {
    const n = Number(text);
    if (text === undefined || !Number.isSafeInteger(n) || n < min) throw new ConfigError(`--${flag} ${text ?? ''} must be a whole number ≥ ${min}`, USAGE);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].startsWith('--') ? (argv[i].slice(2).split(/=(.*)/s) as [string, string?]) : ['', undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    if (flag === 'nproc') out.nprocs = (value() ?? '').split(',').map((s) => int('nproc', s.trim(), 1));
    else if (flag === 'steps') out.steps = int('steps', value(), 1);
    else if (flag === 'warmup') out.warmup = int('warmup', value(), 0);
    else if (flag === 'repeat') out.repeat = int('repeat', value(), 1);
    else if (flag === 'json') out.json = value();
    else if (flag === 'netns') out.hosts = (value() ?? '').split(',').map((h) => h.trim());
    else if (flag === 'nnodes') out.nnodes = (value() ?? '').split(',').map((s) => int('nnodes', s.trim(), 1));
    else if (flag === 'no-torch') out.torch = false;
    else if (flag === 'keep') out.keep = true;
    else if (flag === 'compare-overlap') out.compareOverlap = true;
    else if (flag === 'alternate-overlap') out.alternateOverlap = true;
    else if (CONTROLLED.includes(flag)) throw new ConfigError(`--${flag} is set by the benchmark`, `leave it out (use --steps for the step count)`);
    else out.trainArgs.push(argv[i]);
  }
  if (out.steps <= out.warmup)
    throw new ConfigError(`--steps ${out.steps} leaves no step after --warmup ${out.warmup}`, `pass --steps ${out.warmup + 3} or more`);
  if (out.json === '') throw new ConfigError('--json needs a file', USAGE);
  const overlapFlag = out.trainArgs.find((x) => OVERLAP_FLAGS.includes(x.slice(2).split('=')[0] ?? ''));
  if (out.compareOverlap && overlapFlag !== undefined) throw new ConfigError(`${overlapFlag} is set by --compare-overlap`, 'leave it out');
  if (out.compareOverlap && out.alternateOverlap)
    throw new ConfigError('--compare-overlap and --alternate-overlap are two ways of one comparison', 'pass one of them');
  if (out.alternateOverlap && overlapFlag !== undefined) throw new ConfigError(`${overlapFlag} contradicts --alternate-overlap`, 'leave it out');
  if (out.hosts === undefined) {
    if (out.nnodes.length > 0) throw new ConfigError('--nnodes needs --netns', USAGE);
    out.nnodes = [1];
  } else {
    if (out.hosts.length < 2 || out.hosts.some((h) => !/^[\w-]+$/.test(h)))
      throw new ConfigError(`--netns ${out.hosts.join(',')} must name 2 or more namespace hosts`, 'e.g. --netns n1,n2');
    if (out.nprocs.length !== 1) throw new ConfigError('with --netns, --nproc takes one value (workers per host)', USAGE);
    if (out.nnodes.length === 0) out.nnodes = [1, out.hosts.length];
    const over = out.nnodes.find((h) => h > out.hosts!.length);
    if (over !== undefined) throw new ConfigError(`--nnodes ${over} is more than the ${out.hosts.length} hosts of --netns`, USAGE);
  }
  return out;
}

/** Run to completion; rejects with the last lines of its output when it exits non-zero. */
async function run(cmd: string, args: readonly string[], env: Record<string, string> = {}): Promise<void> {
  const r = await runProcess(cmd, args, { env });
  if (r.code !== 0) throw new RosedistError(`${cmd} ${args.slice(0, 4).join(' ')} … ended with ${r.code ?? r.signal}: ${lastLines(r.stderr || r.stdout, 6)}`);
}

/** The fields both implementations share, as PyTorch's anchor spells them (torch_ddp_ref.py). */
function modelConfig(cfg: TrainConfig, steps: number, warmup: number): Record<string, number | string> {
  return {
    vocab_size: cfg.vocabSize,
    max_position_embeddings: cfg.maxPositionEmbeddings,
    n_layers: cfg.nLayers,
    n_heads: cfg.nHeads,
    d_model: cfg.dModel,
    d_ff: cfg.dFf,
    dropout: cfg.dropout,
    batch_size: cfg.batchSize,
    seq_len: cfg.seqLen,
    lr: cfg.lr,
    seed: cfg.seed,
    grad_accum_steps: cfg.gradAccumSteps,
    dataset: cfg.dataset,
    steps,
    warmup,
  };
}

/**
 * Ours on `nodes` hosts (the first of --netns; loopback when not given): one launcher per host,
 * n workers each. Returns the row with world_size n · nodes.
 */
async function runOurs(n: number, a: BenchArgs, cfg: TrainConfig, dir: string, impl: Impl = 'rosedist', nodes = 1): Promise<Row> {
  const trace = join(dir, 'trace.json');
  const past = String(a.steps + 1);
  const hosts = a.hosts?.slice(0, nodes);
  const secret = join(dir, 'secret');
  writeFileSync(secret, randomBytes(32).toString('hex'), { mode: 0o600 });
  const port = netnsPort();
  const multi = (nodeRank: number): string[] =>
    nodes > 1
      ? [
          '--nnodes',
          String(nodes),
          '--node-rank',
          String(nodeRank),
          '--master-addr',
          netnsAddress(hosts![0]),
          '--master-port',
          String(port),
          '--secret-file',
          secret,
        ]
      : [];
  const launcher = (nodeRank: number): string[] => [
    packagePath('bin/rosedist.mjs'),
    ...multi(nodeRank),
    '--nproc-per-node',
    String(n),
    '--log-dir',
    join(dir, `launcher-${nodeRank}`),
    'train_ddp',
    ...a.trainArgs,
    ...(a.compareOverlap ? [impl === 'rosedist' ? '--overlap' : '--no-overlap'] : a.alternateOverlap ? ['--overlap'] : []),
    '--num-steps',
    String(a.steps),
    '--eval-interval',
    past,
    '--checkpoint-interval',
    past,
    '--checkpoint-path',
    join(dir, 'ckpt.safetensors'),
    '--log-file',
    join(dir, 'train_ddp.log'),
    '--profile',
    trace,
  ];
  const env: Record<string, string> = a.alternateOverlap ? { ROSEDIST_BENCH_ALTERNATE_OVERLAP: '1' } : {};
  await Promise.all((hosts ?? [undefined]).map((ns, r) => run(...onHost(ns, process.execPath, launcher(r)), env)));
  const s = summariseTrace(JSON.parse(readFileSync(trace, 'utf8')) as MergedTrace, a.warmup);
  // The backend rank 0 ran on, from its log header ("rank 0: backend wasm, device …").
  const backend = /rank 0: backend (\w+)/.exec(readFileSync(join(dir, 'train_ddp.log'), 'utf8'))?.[1] ?? cfg.backend;
  const world = n * nodes;
  if (s.worldSize !== world) throw new RosedistError(`the trace holds ${s.worldSize} rank(s), expected ${world}`);
  const tps = (cfg.batchSize * cfg.seqLen * cfg.gradAccumSteps * world * s.timedSteps) / s.trainSeconds;
  return {
    impl,
    world_size: world,
    hosts: nodes,
    tokens_per_s: tps,
    tokens_per_s_per_worker: tps / world,
    allreduce_share: s.allreduceShare,
    allreduce_split_ms: s.allreduceSplitMs,
    peak_rss_mb: Math.max(...s.peakRssMb),
    config: { ...modelConfig(cfg, a.steps, a.warmup), backend },
    phase_ms: s.phaseMs,
    ...(s.overlap !== undefined ? { overlap: s.overlap } : {}),
    ...(s.alternating !== undefined ? { alternating: s.alternating } : {}),
  };
}

/** PyTorch's anchor can run this config; or why not (one line). */
function torchMissing(cfg: TrainConfig): string | undefined {
  if (!existsSync(join(ANCHORS, 'torchrun.sh'))) return `no anchors at ${ANCHORS}`;
  if (spawnSync(ANCHOR_PYTHON, ['-c', 'import torch'], { stdio: 'ignore' }).status !== 0) {
    return `${ANCHOR_PYTHON} cannot import torch (apt-get install python3-torch libopenblas0-pthread)`;
  }
  if (cfg.gradAccumSteps !== 1) return 'the anchor has no --grad-accum-steps';
  if (!/^toy(:\d+)?$/.test(cfg.dataset) && !(cfg.dataset.startsWith('text:') && cfg.tokenizer === 'byte')) return `the anchor has no --dataset ${cfg.dataset}`;
  return undefined;
}

/** Writes each worker's peak RSS (MiB) at exit; torchrun sets RANK in workers only. */
const PEAK_RSS_HOOK = `import atexit, os, resource
def _peak():
    rank, out = os.environ.get("RANK"), os.environ.get("ROSEDIST_BENCH_RSS_DIR")
    if rank is not None and out:
        with open(os.path.join(out, "rank_%s" % rank), "w") as f:
            f.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
atexit.register(_peak)
`;

async function runTorch(n: number, a: BenchArgs, cfg: TrainConfig, dir: string, nodes = 1): Promise<Row> {
  const json = join(dir, 'torch.json');
  const hook = join(dir, 'pyhook');
  const rss = join(dir, 'rss');
  mkdirSync(hook);
  mkdirSync(rss);
  writeFileSync(join(hook, 'sitecustomize.py'), PEAK_RSS_HOOK);
  const dataset = cfg.dataset.startsWith('text:') ? `bytes:${cfg.dataset.slice(5)}` : 'toy';
  const c = modelConfig(cfg, a.steps, a.warmup);
  const flags = ['vocab_size', 'max_position_embeddings', 'n_layers', 'n_heads', 'd_model', 'd_ff', 'dropout', 'batch_size', 'seq_len', 'lr', 'seed'].flatMap(
    (k) => [`--${k.replaceAll('_', '-')}`, String(c[k])],
  );
  const args = [...flags, '--dataset', dataset, '--num-steps', String(a.steps), '--eval-interval', String(a.steps + 1), '--threads', '1', '--json', json];
  const env = { PYTHONPATH: [hook, process.env.PYTHONPATH].filter(Boolean).join(':'), ROSEDIST_BENCH_RSS_DIR: rss };
  const hosts = a.hosts?.slice(0, nodes);
  if (hosts === undefined || nodes === 1) {
    const port = hosts === undefined ? await freePort('127.0.0.1') : netnsPort();
    await run(...onHost(hosts?.[0], 'sh', [join(ANCHORS, 'torchrun.sh'), String(n), join(ANCHORS, 'torch_ddp_ref.py'), ...args]), {
      ...env,
      MASTER_PORT: String(port),
    });
  } else {
    // torchrun.sh is for one host; across hosts, torch.distributed.run on each, as torchrun.sh starts it.
    const port = netnsPort();
    const master = netnsAddress(hosts[0] as string);
    await Promise.all(
      hosts.map((ns, nodeRank) => {
        const dist = ['-m', 'torch.distributed.run', '--redirects', '1', '--tee', '1', '--log_dir', join(dir, `logs-${ns}`)];
        const where = [`--nnodes=${nodes}`, `--node_rank=${nodeRank}`, `--nproc_per_node=${n}`, `--master_addr=${master}`, `--master_port=${port}`];
        return run(...onHost(ns, ANCHOR_PYTHON, [...dist, ...where, join(ANCHORS, 'torch_ddp_ref.py'), ...args]), { ...env, GLOO_SOCKET_IFNAME: 'eth0' });
      }),
    );
  }
  const result = JSON.parse(readFileSync(json, 'utf8')) as { world_size: number; tokens_per_s: number; torch: string };
  const peaks = readdirSync(rss).map((f) => Number(readFileSync(join(rss, f), 'utf8')));
  if (result.world_size !== n * nodes) throw new RosedistError(`PyTorch ran ${result.world_size} rank(s), expected ${n * nodes}`);
  return {
    impl: 'pytorch',
    world_size: result.world_size,
    hosts: nodes,
    tokens_per_s: result.tokens_per_s,
    tokens_per_s_per_worker: result.tokens_per_s / result.world_size,
    allreduce_share: null,
    // Each host's workers write rank files into the one shared temporary directory.
    peak_rss_mb: peaks.length === n * nodes ? Math.max(...peaks) : null,
    config: { ...c, warmup: 0, backend: `torch ${result.torch} gloo` },
  };
}

/** Per (impl, world size), the run with the median tokens/s (the lower one of an even count). */
function medianRows(runs: readonly Row[]): Row[] {
  const groups = new Map<string, Row[]>();
  for (const r of runs) groups.set(`${r.impl} ${r.world_size}`, [...(groups.get(`${r.impl} ${r.world_size}`) ?? []), r]);
  return [...groups.values()].map((g) => {
    const sorted = [...g].sort((x, y) => x.tokens_per_s - y.tokens_per_s);
    const alternating = g.flatMap((r) => (r.alternating === undefined ? [] : [r.alternating.noOverlap.stepMs / r.alternating.overlap.stepMs]));
    return {
      ...sorted[(sorted.length - 1) >> 1],
      tokens_per_s_rounds: g.map((r) => r.tokens_per_s),
      ...(alternating.length > 0 ? { alternating_speedup_rounds: alternating } : {}),
    };
  });
}

const fmt = (x: number | null, digits = 0): string =>
  x === null ? '—' : x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

function report(rows: readonly Row[], nprocs: readonly number[], acrossHosts = false): Record<string, unknown> {
  const lines = [
    '| impl | hosts | world_size | tokens/s total | tokens/s per worker | all-reduce share | peak RSS MiB (max worker) |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.impl} | ${r.hosts} | ${r.world_size} | ${fmt(r.tokens_per_s)} | ${fmt(r.tokens_per_s_per_worker)} | ${r.allreduce_share === null ? '—' : `${(r.allreduce_share * 100).toFixed(1)}%`} | ${fmt(r.peak_rss_mb)} |`,
    );
  }
  const find = (impl: Impl, n: number) => rows.find((r) => r.impl === impl && r.world_size === n);
  const ratios = nprocs.flatMap((n) => {
    const [o, t] = [find('rosedist', n), find('pytorch', n)];
    if (!o || !t) return [];
    return [
      { world_size: n, tokens_per_s: o.tokens_per_s / t.tokens_per_s, peak_rss_mb: o.peak_rss_mb && t.peak_rss_mb ? o.peak_rss_mb / t.peak_rss_mb : null },
    ];
  });
  if (ratios.length > 0)
    lines.push(
      '',
      '| ours/PyTorch | tokens/s | peak RSS |',
      '|---|---|---|',
      ...ratios.map((q) => `| world ${q.world_size} | ${fmt(q.tokens_per_s, 2)} | ${fmt(q.peak_rss_mb, 2)} |`),
    );
  const scaling: Record<string, number> = {};
  const onHosts = (impl: Impl, h: number) => rows.find((r) => r.impl === impl && r.hosts === h);
  for (const impl of ['rosedist', 'pytorch'] as const) {
    const [one, two] = acrossHosts ? [onHosts(impl, 1), onHosts(impl, 2)] : [find(impl, 1), find(impl, 2)];
    if (one && two) scaling[impl] = two.tokens_per_s / (2 * one.tokens_per_s);
  }
  if (Object.keys(scaling).length > 0)
    lines.push(
      '',
      `scaling efficiency ${acrossHosts ? '2 vs 1 hosts, tps(2 hosts)/(2·tps(1 host))' : '2 vs 1, tps(2)/(2·tps(1))'}: ${Object.entries(scaling)
        .map(([k, v]) => `${k} ${v.toFixed(2)}`)
        .join(', ')}`,
    );
  for (const r of rows) {
    if (r.phase_ms)
      lines.push(
        `${r.impl} world ${r.world_size}, ms per step: ${Object.entries(r.phase_ms)
          .map(([k, v]) => `${k} ${v.toFixed(1)}`)
          .join(', ')}`,
      );
    if (r.overlap !== undefined) {
      const o = r.overlap;
      lines.push(
        `${r.impl} world ${r.world_size}, overlap: ${o.buckets} buckets in flight ${o.inFlightMs.toFixed(1)} ms per step, ${o.hiddenMs.toFixed(1)} ms of it (${(o.hidden * 100).toFixed(0)}%) before backward ended`,
      );
    }
    // (With overlap the first allreduce span is only the wait for bucket 0: no split.)
    if (r.allreduce_split_ms && r.world_size > 1 && r.overlap === undefined) {
      lines.push(
        `${r.impl} world ${r.world_size}, gradient all-reduce ms per step: collective ${r.allreduce_split_ms.collective.toFixed(1)}, waiting for the slower rank ${r.allreduce_split_ms.wait.toFixed(1)}`,
      );
    }
  }
  const overlapAb = nprocs.flatMap((n) => {
    const [on, off] = [find('rosedist', n), find('rosedist --no-overlap', n)];
    if (!on?.phase_ms || !off?.phase_ms) return [];
    const exposed = on.phase_ms.allreduce;
    const whole = off.phase_ms.allreduce;
    return [
      {
        world_size: n,
        tokens_per_s: on.tokens_per_s / off.tokens_per_s,
        allreduce_ms: { overlap: exposed, no_overlap: whole },
        hidden: whole > 0 ? 1 - exposed / whole : 0,
      },
    ];
  });
  for (const r of rows) {
    const alt = r.alternating;
    if (alt === undefined) continue;
    const [on, off] = [alt.overlap, alt.noOverlap];
    lines.push(
      `alternating steps, world ${r.world_size} (${on.steps} overlapped, ${off.steps} not, one run): step ${off.stepMs.toFixed(1)} → ${on.stepMs.toFixed(1)} ms (median), ×${(off.stepMs / on.stepMs).toFixed(3)} tokens/s${r.alternating_speedup_rounds && r.alternating_speedup_rounds.length > 1 ? ` (rounds: ${r.alternating_speedup_rounds.map((x) => x.toFixed(3)).join(', ')})` : ''}; all-reduce on the critical path ${off.allreduceMs.toFixed(1)} → ${on.allreduceMs.toFixed(1)} ms: overlap achieved ${(off.allreduceMs > 0 ? (1 - on.allreduceMs / off.allreduceMs) * 100 : 0).toFixed(0)}%`,
    );
  }
  for (const q of overlapAb) {
    lines.push(
      `overlap A/B, world ${q.world_size}: tokens/s ×${q.tokens_per_s.toFixed(3)}; all-reduce on the step's critical path ${q.allreduce_ms.no_overlap.toFixed(1)} → ${q.allreduce_ms.overlap.toFixed(1)} ms per step: overlap achieved ${(q.hidden * 100).toFixed(0)}%`,
    );
  }
  console.log(lines.join('\n'));
  return { rows, ratios, scaling_efficiency: scaling, ...(overlapAb.length > 0 ? { overlap_ab: overlapAb } : {}) };
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const cfg = parseTrainConfig([...a.trainArgs, '--num-steps', String(a.steps)], 'train_ddp');
  const missing = a.torch ? torchMissing(cfg) : 'skipped (--no-torch)';
  if (missing !== undefined) console.log(`PyTorch: ${missing}; running ours only`);
  const root = mkdtempSync(join(tmpdir(), 'rosedist-bench-train-'));
  const runs: Row[] = [];
  try {
    // Rounds interleave ours and PyTorch, so that a burst of load on the shared machine hits both.
    for (let round = 1; round <= a.repeat; round++) {
      for (const nodes of a.nnodes) {
        for (const n of a.nprocs) {
          const dir = (label: string): string => mkdtempSync(join(root, `${label}-${nodes}x${n}-`));
          const what = a.hosts === undefined ? `${n} worker(s)` : `${nodes} host(s) × ${n} worker(s)`;
          if (a.compareOverlap && n * nodes > 1) {
            // Alternate which goes first, so that neither always follows the other.
            const order: Impl[] = round % 2 === 1 ? ['rosedist', 'rosedist --no-overlap'] : ['rosedist --no-overlap', 'rosedist'];
            for (const impl of order) {
              console.error(`round ${round}/${a.repeat}: ${impl}, ${what}, ${a.steps} steps …`);
              runs.push(await runOurs(n, a, cfg, dir(impl === 'rosedist' ? 'ours' : 'ours-no-overlap'), impl, nodes));
            }
          } else {
            console.error(`round ${round}/${a.repeat}: rosedist, ${what}, ${a.steps} steps …`);
            runs.push(await runOurs(n, a, cfg, dir('ours'), 'rosedist', nodes));
          }
          if (missing !== undefined) continue;
          console.error(`round ${round}/${a.repeat}: pytorch, ${what}, ${a.steps} steps …`);
          try {
            runs.push(await runTorch(n, a, cfg, dir('torch'), nodes));
          } catch (e) {
            console.log(`PyTorch with ${what} failed, left out: ${formatError(e)}`);
          }
        }
      }
    }
  } finally {
    if (a.keep) console.log(`kept: ${root}`);
    else rmSync(root, { recursive: true, force: true });
  }
  console.log(
    `\ntraining steps ${a.warmup + 1}..${a.steps} of ours (PyTorch: all ${a.steps}), eval and checkpoints excluded; ${cfg.batchSize} samples × ${cfg.seqLen} tokens per worker per step`,
  );
  const rows = medianRows(runs);
  if (a.repeat > 1) console.log(`each row: the round with the median tokens/s of ${a.repeat} (all rounds in tokens_per_s_rounds)`);
  const worlds = [...new Set(a.nnodes.flatMap((h) => a.nprocs.map((n) => h * n)))];
  const result = report(rows, worlds, a.hosts !== undefined);
  const ours = rows.filter((r) => r.impl === 'rosedist');
  const single = a.nprocs.length === 1 ? { world_size: ours[0].world_size, tokens_per_s: ours[0].tokens_per_s, peak_rss_mb: ours[0].peak_rss_mb } : {};
  if (a.json !== undefined) writeFileSync(a.json, `${JSON.stringify({ ...single, ...result }, null, 1)}\n`);
}

main().catch((e: unknown) => {
  console.error(`bench:train: ${formatError(e)}`);
  process.exitCode = exitCodeOf(e);
});
