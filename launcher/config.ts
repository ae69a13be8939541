/**
 * The launcher's resolved, validated, frozen configuration. Every bad value becomes one
 * ConfigError naming the option (or PET_* variable) it came from and saying how to fix it; the
 * checks that need the outside world (does the program exist, is the port free, are there GPUs)
 * happen here too, so that nothing starts on a configuration that cannot work.
 */
import { randomBytes } from 'node:crypto';
import { accessSync, constants, mkdirSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { ConfigError } from '../shared/errors.js';
import { jobSecret } from '../shared/job_secret.js';
import { parseSeconds, timeoutMs } from '../shared/timers.js';
import type { CliInput, Given } from './cli.js';
import { countGpus } from './devices.js';
import { parseStdSpec, type StdSpec } from './redirects.js';
import { canBind, freePort } from './ports.js';
import { isSet, resolveProgram, type WorkerProgram } from './program.js';
import { readSecret } from './secret.js';
import { slurmDefaults } from './slurm.js';

export interface LaunchConfig {
  /** What each worker runs (launcher/program.ts). */
  readonly program: WorkerProgram;
  readonly programArgs: readonly string[];
  readonly nprocPerNode: number;
  readonly nnodes: number;
  readonly nodeRank: number;
  readonly masterAddr: string;
  readonly masterPort: number;
  readonly maxRestarts: number;
  readonly monitorIntervalMs: number;
  readonly runId: string;
  /** False when the id was generated: the other nodes of a multi-node run then adopt node 0's. */
  readonly runIdGiven: boolean;
  /** Absolute; undefined: error files go to a temporary directory, removed at the end. */
  readonly logDir: string | undefined;
  readonly redirects: StdSpec;
  readonly tee: StdSpec;
  readonly localRanksFilter: ReadonlySet<number> | undefined;
  /** Authenticates the launchers to each other and the workers' sockets (hex or user text). */
  readonly secret: string;
  /** NVIDIA GPUs visible here (CUDA_VISIBLE_DEVICES per worker when > 0). */
  readonly gpuCount: number;
  /** SIGTERM → SIGKILL grace when stopping workers, ms (env ROSEDIST_STOP_GRACE_S, default 3 s). */
  readonly stopGraceMs: number;
  /** How long the nodes of a multi-node run wait for each other, ms; Infinity: no limit. */
  readonly joinTimeoutMs: number;
  /**
   * `--nnodes MIN:MAX` (launcher/elastic.ts): undefined for a fixed number of nodes. Then
   * `nnodes` is MAX, and `nodeRank` means nothing until a round assigns one.
   */
  readonly elastic: ElasticConfig | undefined;
}

export interface ElasticConfig {
  readonly minNodes: number;
  readonly maxNodes: number;
  /** How long a round waits for MIN nodes, ms (--rdzv-timeout). */
  readonly rdzvTimeoutMs: number;
  /** How long a round waits for more once MIN are there, ms (--rdzv-last-call). */
  readonly lastCallMs: number;
}

const DEFAULT_STOP_GRACE_S = 3;

/** What the configuration asks of the host; injected by tests. */
export interface HostProbe {
  readonly countGpus: () => number;
  readonly canBind: (host: string, port: number) => Promise<boolean>;
  readonly freePort: (host: string) => Promise<number>;
  readonly cpus: () => number;
}

const realHost: HostProbe = { countGpus, canBind, freePort, cpus: availableParallelism };

type Env = Readonly<Record<string, string | undefined>>;

function int(g: Given, min: number, max: number, what: string): number {
  const n = Number(g.value);
  if (!/^\s*\d+\s*$/.test(g.value) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new ConfigError(`${g.from} ${JSON.stringify(g.value)} is not ${what}`, `pass ${g.from} an integer from ${min} to ${max}`);
  }
  return n;
}

/** A positive, finite number of seconds (any size: timers beyond 2^31 ms are chained, shared/timers.ts). */
function seconds(g: Given): number {
  const n = Number(g.value);
  if (g.value.trim() === '' || !Number.isFinite(n) || n <= 0) {
    throw new ConfigError(`${g.from} ${JSON.stringify(g.value)} is not a number of seconds above 0`, `pass ${g.from} e.g. 0.5`);
  }
  return n;
}

/** A timeout in seconds → ms; 0, inf (or infinity, never) → Infinity: no timeout. */
function timeout(g: Given): number {
  const n = parseSeconds(g.value);
  if (Number.isNaN(n) || n < 0) {
    throw new ConfigError(`${g.from} ${JSON.stringify(g.value)} is not a number of seconds`, `pass ${g.from} e.g. 300, or 0 or inf for no timeout`);
  }
  return timeoutMs(n);
}

function nproc(g: Given | undefined, gpus: number, cpus: number): number {
  if (g === undefined) return 1;
  switch (g.value) {
    case 'gpu':
      if (gpus === 0) throw new ConfigError(`${g.from} gpu: no NVIDIA GPU found on this host`, `pass ${g.from} a number, cpu or auto`);
      return gpus;
    case 'cpu':
      return cpus;
    case 'auto':
      return gpus > 0 ? gpus : cpus;
    default:
      return int(g, 1, 4096, 'a number of workers (1 or more), auto, cpu or gpu');
  }
}

function runId(g: Given | undefined): string {
  if (g === undefined) return randomBytes(4).toString('hex');
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(g.value) || g.value.startsWith('.')) {
    throw new ConfigError(`${g.from} ${JSON.stringify(g.value)} is not a usable run id`, 'use letters, digits, ".", "_" and "-" (it names a directory)');
  }
  return g.value;
}

/** Local ranks to show; each must exist on this node (`--local-ranks-filter 5` of 2 would hide everything). */
function ranksFilter(g: Given | undefined, nprocPerNode: number): ReadonlySet<number> | undefined {
  if (g === undefined) return undefined;
  const parts = g.value.split(',').map((s) => s.trim());
  if (parts.some((p) => !/^\d+$/.test(p))) {
    throw new ConfigError(`${g.from} ${JSON.stringify(g.value)} is not a list of local ranks`, `pass e.g. ${g.from} 0 or ${g.from} 0,2`);
  }
  const ranks = parts.map(Number);
  const missing = ranks.filter((r) => r >= nprocPerNode);
  if (missing.length > 0) {
    throw new ConfigError(
      `${g.from} ${JSON.stringify(g.value)} names local rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')}, but this node runs local ranks 0..${nprocPerNode - 1}`,
      `pass local ranks below --nproc-per-node ${nprocPerNode}`,
    );
  }
  return new Set(ranks);
}

/**
 * The --log-dir, made now (with its parents) so that a path that cannot be one fails here in one
 * line instead of as a stack trace when the first worker's file is opened.
 */
function logDirectory(g: Given | undefined): string | undefined {
  if (g === undefined) return undefined;
  const dir = resolve(g.value);
  try {
    mkdirSync(dir, { recursive: true });
    if (!statSync(dir).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOTDIR' || code === 'EEXIST'
        ? 'it or one of its parents is a file'
        : code === 'EACCES' || code === 'EPERM'
          ? 'no permission to write there'
          : (code ?? (e as Error).message);
    throw new ConfigError(
      `${g.from} ${JSON.stringify(g.value)} cannot be used as a directory (${dir}): ${why}`,
      `pass ${g.from} a directory this user can write, or a path where one can be made`,
    );
  }
  return dir;
}

function stopGraceMs(env: Env): number {
  const text = env.ROSEDIST_STOP_GRACE_S;
  if (text === undefined || text === '') return DEFAULT_STOP_GRACE_S * 1000;
  const s = Number(text);
  if (!Number.isFinite(s) || s < 0) {
    throw new ConfigError(`ROSEDIST_STOP_GRACE_S=${JSON.stringify(text)} is not a number of seconds`, 'set it to e.g. 3, or unset it');
  }
  return s * 1000;
}

/** Validate `cli` into a frozen LaunchConfig. Throws ConfigError (exit code 2) on any bad input. */
export async function resolveConfig(cli: CliInput, env: Env = process.env, host: HostProbe = realHost): Promise<LaunchConfig> {
  // Under srun, the options not given come from the step (launcher/slurm.ts).
  const { options: o, jobKey } = slurmDefaults(cli.options, env);
  const standalone = isSet(o.standalone);
  const elastic = elasticConfig(o);
  const nnodes = elastic !== undefined ? elastic.maxNodes : o.nnodes === undefined ? 1 : int(o.nnodes, 1, 1024, 'a number of nodes (1 or more)');
  if (standalone && (nnodes > 1 || elastic !== undefined)) {
    throw new ConfigError(`--standalone runs a single node, but ${o.nnodes?.from} is ${o.nnodes?.value}`, 'drop --standalone for a multi-node run');
  }
  // Elastic: the rendezvous numbers the nodes (node 0 hosts it); a rank from Slurm is ignored.
  const rankGiven = o['node-rank'] !== undefined && /^(--|PET_)/.test(o['node-rank'].from);
  if (elastic !== undefined && rankGiven) {
    throw new ConfigError(
      `${o['node-rank']?.from} was given with ${o.nnodes?.from} ${o.nnodes?.value}`,
      'drop it: in an elastic run the rendezvous assigns node ranks (the launcher that hosts it is node 0)',
    );
  }
  const nodeRank = o['node-rank'] === undefined || elastic !== undefined ? 0 : int(o['node-rank'], 0, 1023, 'a node rank');
  if (nodeRank >= nnodes) {
    throw new ConfigError(`${o['node-rank']?.from} ${nodeRank} is not below --nnodes ${nnodes}`, `node ranks run from 0 to ${nnodes - 1}`);
  }
  const program = resolveProgram(cli.program, { noPython: o['no-python'], module: o.module, python: o.python }, env);
  const gpuCount = gpusVisible(host.countGpus(), env.CUDA_VISIBLE_DEVICES);
  const nprocPerNode = nproc(o['nproc-per-node'], gpuCount, host.cpus());
  const masterAddr = o['master-addr']?.value.trim() || '127.0.0.1';
  const multiNode = nnodes > 1 || elastic !== undefined;
  // On several nodes node 0 listens on master-port + 1 for the other launchers.
  const maxPort = multiNode ? 65534 : 65535;
  const portGiven = o['master-port'];
  const masterPort = portGiven !== undefined ? int(portGiven, 1, maxPort, `a port from 1 to ${maxPort}`) : multiNode ? 29500 : await host.freePort(masterAddr);
  // Elastic: whichever launcher can listen there hosts the rendezvous (launcher/elastic_rendezvous.ts).
  if (portGiven !== undefined && elastic === undefined && (!multiNode || nodeRank === 0)) {
    const ports = multiNode ? [masterPort, masterPort + 1] : [masterPort];
    for (const port of ports) {
      if (!(await host.canBind(masterAddr, port))) {
        const from = portGiven.from;
        const flag = /^(--|PET_)/.test(from) ? from : '--master-port';
        throw new ConfigError(
          `cannot listen on ${masterAddr}:${port} (${from} ${masterPort}): the port is in use or the address is not this host's`,
          multiNode ? `pick a ${flag} whose port and the next one are free` : `pick another ${flag}, or omit it to get a free port`,
        );
      }
    }
  }
  const redirects = parseStdSpec(o.redirects?.from ?? '--redirects', o.redirects?.value ?? '0');
  const tee = parseStdSpec(o.tee?.from ?? '--tee', o.tee?.value ?? '0');
  const wantsFiles = [redirects, tee].some((s) => s.all !== 0 || [...s.byLocalRank.values()].some((v) => v !== 0));
  if (wantsFiles && o['log-dir'] === undefined) {
    throw new ConfigError('--redirects/--tee write files, but no --log-dir was given', 'add --log-dir DIR');
  }
  const config: Omit<LaunchConfig, 'logDir'> = {
    program,
    programArgs: Object.freeze([...cli.programArgs]),
    nprocPerNode,
    nnodes,
    nodeRank,
    masterAddr,
    masterPort,
    maxRestarts: o['max-restarts'] === undefined ? 0 : int(o['max-restarts'], 0, 1_000_000, 'a number of restarts (0 or more)'),
    monitorIntervalMs: o['monitor-interval'] === undefined ? 100 : seconds(o['monitor-interval']) * 1000,
    runId: runId(o['run-id']),
    runIdGiven: o['run-id'] !== undefined,
    redirects,
    tee,
    localRanksFilter: ranksFilter(o['local-ranks-filter'], nprocPerNode),
    secret: readSecret(o.secret, o['secret-file'], multiNode, jobKey === undefined ? undefined : () => jobSecret(env, jobKey)),
    gpuCount,
    stopGraceMs: stopGraceMs(env),
    joinTimeoutMs: o['join-timeout'] === undefined ? 300_000 : timeout(o['join-timeout']),
    elastic,
  };
  // Last: it makes the directory, which no other bad flag should leave behind.
  return Object.freeze({ ...config, logDir: logDirectory(o['log-dir']) });
}

/** torchrun's defaults: rdzv timeout 900 s, last call 30 s. */
const DEFAULT_RDZV_TIMEOUT_S = 900;
const DEFAULT_LAST_CALL_S = 30;

/** `--nnodes MIN:MAX` and its rendezvous options; undefined for a fixed number of nodes. */
function elasticConfig(o: CliInput['options']): ElasticConfig | undefined {
  const g = o.nnodes;
  if (g === undefined || !g.value.includes(':')) {
    for (const name of ['rdzv-timeout', 'rdzv-last-call'] as const) {
      const given = o[name];
      if (given !== undefined) throw new ConfigError(`${given.from} applies to elastic runs only`, `pass --nnodes MIN:MAX, or drop ${given.from}`);
    }
    return undefined;
  }
  const m = /^\s*(\d+)\s*:\s*(\d+)\s*$/.exec(g.value);
  const min = Number(m?.[1]);
  const max = Number(m?.[2]);
  if (m === null || min < 1 || max < min || max > 1024) {
    throw new ConfigError(
      `${g.from} ${JSON.stringify(g.value)} is not a range of nodes`,
      `pass ${g.from} MIN:MAX with 1 ≤ MIN ≤ MAX ≤ 1024, e.g. ${g.from} 2:4`,
    );
  }
  const s = (name: 'rdzv-timeout' | 'rdzv-last-call', dflt: number): number => (o[name] === undefined ? dflt : seconds(o[name])) * 1000;
  return { minNodes: min, maxNodes: max, rdzvTimeoutMs: s('rdzv-timeout', DEFAULT_RDZV_TIMEOUT_S), lastCallMs: s('rdzv-last-call', DEFAULT_LAST_CALL_S) };
}

/** GPUs a worker may use: those detected, narrowed by a user's CUDA_VISIBLE_DEVICES list. */
function gpusVisible(detected: number, visible: string | undefined): number {
  if (detected === 0 || visible === undefined) return detected;
  return visible.split(',').filter((s) => s.trim() !== '' && s.trim() !== '-1').length;
}
