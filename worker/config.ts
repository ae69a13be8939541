/**
 * The training programs' options: parsed once, at the edge, into a frozen `TrainConfig`.
 *
 * Flags are kebab-case with the Python original's names and defaults (argparse), plus ours.
 * Parsing is strict: an unknown flag, a value of the wrong type, a non-positive size, or options
 * that contradict each other raise a ConfigError naming the flag and the fix. Numbers are read as
 * strings and converted here, because yargs turns `--batch-size abc` into null and a bare
 * `--batch-size` into its default.
 */
import { ConfigError } from '../shared/errors.js';
import { parseSeconds } from '../shared/timers.js';
import { yargs } from '../shared/yargs.js';
import { BACKEND_CHOICES, type BackendChoice } from './backend_choice.js';
import type { GPTConfig } from './model/gpt.js';
import type { NonFiniteMode } from './numerics.js';
import { TOPOLOGY_CHOICES, type TopologyChoice } from './comm/hierarchical.js';

export type ProgramName = 'train_minimal' | 'train_ddp';
export type LogFormat = 'text' | 'json';
export type GradCompression = 'none' | 'bf16' | 'fp16';

export interface TrainConfig {
  readonly program: ProgramName;
  // Model (the original's flags).
  readonly vocabSize: number;
  readonly maxPositionEmbeddings: number;
  readonly nLayers: number;
  readonly nHeads: number;
  readonly dModel: number;
  readonly dFf: number;
  /** Dropout probability in [0, 1). */
  readonly dropout: number;
  // Optimisation.
  /** Samples per rank per micro-step. */
  readonly batchSize: number;
  /** Tokens per sample, T. */
  readonly seqLen: number;
  /** Total optimizer steps, counted across resumes. */
  readonly numSteps: number;
  readonly lr: number;
  readonly weightDecay: number;
  /** Micro-batches per optimizer step; gradients are all-reduced once per step. */
  readonly gradAccumSteps: number;
  /** ZeRO stage: 0 (every rank holds the whole optimizer state) or 1 (sharded over ranks, zero.ts). */
  readonly zero: number;
  /** Gradients on the wire: 'none' (float32) or a 16-bit format (comm/wire.ts), summed in float32. */
  readonly gradCompression: GradCompression;
  /**
   * All-reduce gradient buckets while backward runs (ddp_overlap.ts). Off by default (measured
   * slower on the 2-core machine: README); refused with --zero 1 or tensor parallelism.
   */
  readonly overlap: boolean;
  /** Overlap's bucket size, MiB (a bucket closes at the first parameter boundary past it). */
  readonly bucketMb: number;
  /**
   * How the gradient all-reduce crosses hosts (comm/hierarchical.ts): 'auto' (hierarchical when the
   * run spans several hosts with the same number > 1 of workers each, flat otherwise), 'flat' (one
   * ring over every rank) or 'hierarchical'.
   */
  readonly allreduceTopology: TopologyChoice;
  readonly seed: number;
  /** What was asked (--no-amp clears it); tfjs trains in float32 regardless. */
  readonly amp: boolean;
  // Evaluation and checkpoints.
  readonly evalInterval: number;
  readonly checkpointInterval: number;
  readonly checkpointPath: string;
  readonly resume: boolean;
  // Data.
  /** 'toy', 'toy:<samples>', 'brown' or 'text:<path>'. */
  readonly dataset: string;
  readonly tokenizer: string;
  readonly dataDir: string;
  readonly dropLast: boolean;
  // Runtime.
  readonly backend: BackendChoice;
  readonly logFile: string;
  /** Derived: the log file without `.log`, plus `.metrics.jsonl`. */
  readonly metricsFile: string;
  readonly logFormat: LogFormat;
  /** Seconds a collective may wait for its peers before failing; 0: no timeout (also given as inf). */
  readonly collectiveTimeoutS: number;
  /** Chrome trace of every rank's step phases, written by rank 0 at the end; null: not profiled. */
  readonly profile: string | null;
  /** A NaN or infinite loss or gradient: stop the run, or skip that optimizer step (numerics.ts). */
  readonly onNonfinite: NonFiniteMode;
  /** With --on-nonfinite skip: this many skipped optimizer steps in a row end the run. */
  readonly maxConsecutiveSkips: number;
  /** A failed checkpoint write: warn and train on instead of stopping. */
  readonly tolerateCheckpointErrors: boolean;
  /** Ranks per tensor-parallel group (divides the world size, n_heads and d_ff); 1: data parallel only. */
  readonly tensorParallelSize: number;
  /** The Python original's flag: tensor parallelism over the whole world (tp = world size). */
  readonly useTensorParallel: boolean;
}

/** 'seconds': a float, or inf/infinity/never (shared/timers.ts parseSeconds). */
type Kind = 'int' | 'posint' | 'float' | 'seconds' | 'string' | 'bool';
interface OptionSpec {
  readonly flag: string;
  readonly kind: Kind;
  readonly describe: string;
  /** A value, a function of the program name, or null: off unless given. */
  readonly default: number | string | boolean | null | ((p: ProgramName) => string);
  readonly choices?: readonly string[];
  /** Whole numbers: the smallest and largest accepted (default 1 or 0, and 2^32-1). */
  readonly min?: number;
  readonly max?: number;
}

/** Every flag, keyed by its TrainConfig field; one line of help each. */
const OPTIONS = {
  vocabSize: { flag: 'vocab-size', kind: 'posint', default: 10000, min: 2, max: 2 ** 20, describe: 'vocabulary size V' },
  maxPositionEmbeddings: { flag: 'max-position-embeddings', kind: 'posint', default: 128, max: 2 ** 16, describe: 'longest sequence the model can take' },
  nLayers: { flag: 'n-layers', kind: 'posint', default: 2, max: 1024, describe: 'transformer blocks' },
  nHeads: { flag: 'n-heads', kind: 'posint', default: 4, max: 2 ** 12, describe: 'attention heads (must divide --d-model)' },
  dModel: { flag: 'd-model', kind: 'posint', default: 128, max: 2 ** 16, describe: 'embedding width C' },
  dFf: { flag: 'd-ff', kind: 'posint', default: 512, max: 2 ** 18, describe: 'MLP hidden width' },
  dropout: { flag: 'dropout', kind: 'float', default: 0.1, describe: 'dropout probability in [0, 1)' },
  batchSize: { flag: 'batch-size', kind: 'posint', default: 8, max: 2 ** 20, describe: 'samples per rank per micro-step' },
  seqLen: { flag: 'seq-len', kind: 'posint', default: 32, max: 2 ** 16, describe: 'tokens per sample T' },
  numSteps: { flag: 'num-steps', kind: 'posint', default: 50, describe: 'total optimizer steps (a resumed run continues to this count)' },
  lr: { flag: 'lr', kind: 'float', default: 3e-4, describe: 'AdamW learning rate' },
  weightDecay: { flag: 'weight-decay', kind: 'float', default: 0.01, describe: 'AdamW decoupled weight decay' },
  gradAccumSteps: { flag: 'grad-accum-steps', kind: 'posint', default: 1, max: 2 ** 16, describe: 'micro-batches per optimizer step' },
  zero: {
    flag: 'zero',
    kind: 'int',
    default: 0,
    describe: 'ZeRO stage: 1 shards the optimizer state over the ranks (reduce-scatter, AdamW on 1/N, all-gather)',
  },
  gradCompression: {
    flag: 'grad-compression',
    kind: 'string',
    default: 'none',
    choices: ['none', 'bf16', 'fp16'],
    describe: 'gradients cross the wire as bf16 or fp16 (half the bytes), summed in float32',
  },
  overlap: {
    flag: 'overlap',
    kind: 'bool',
    default: false,
    describe: 'all-reduce gradient buckets while backward runs (PyTorch DDP; off by default: it did not pay on 2 cores, see README)',
  },
  bucketMb: { flag: 'bucket-mb', kind: 'float', default: 1, describe: 'gradient bucket size of --overlap, MiB' },
  allreduceTopology: {
    flag: 'allreduce-topology',
    kind: 'string',
    default: 'auto',
    choices: TOPOLOGY_CHOICES,
    describe: 'auto: hierarchical across hosts of equal worker counts (within host, across hosts, within host), else flat; flat; hierarchical',
  },
  seed: { flag: 'seed', kind: 'int', default: 0, describe: 'seed of weights, data split, data order and dropout' },
  amp: { flag: 'amp', kind: 'bool', default: true, describe: 'mixed precision (--no-amp); tfjs always runs float32' },
  evalInterval: { flag: 'eval-interval', kind: 'posint', default: 10, describe: 'evaluate every N steps (and at the end)' },
  checkpointInterval: { flag: 'checkpoint-interval', kind: 'posint', default: 20, describe: 'checkpoint every N steps (and at the end)' },
  checkpointPath: {
    flag: 'checkpoint-path',
    kind: 'string',
    default: (p) => (p === 'train_ddp' ? 'checkpoints/minigpt_ddp.safetensors' : 'checkpoints/minigpt_single.safetensors'),
    describe: 'checkpoint file (safetensors)',
  },
  resume: { flag: 'resume', kind: 'bool', default: false, describe: 'continue from --checkpoint-path if it exists' },
  dataset: { flag: 'dataset', kind: 'string', default: 'toy', describe: 'toy | toy:<samples> | brown | text:<path>' },
  tokenizer: { flag: 'tokenizer', kind: 'string', default: 'byte', choices: ['byte', 'gpt2'], describe: 'tokenizer of text datasets (brown, text:<path>)' },
  dataDir: { flag: 'data-dir', kind: 'string', default: 'data/cache', describe: 'cache of prepared datasets' },
  dropLast: { flag: 'drop-last', kind: 'bool', default: false, describe: 'drop the tail instead of padding shards to equal length' },
  backend: { flag: 'backend', kind: 'string', default: 'auto', choices: BACKEND_CHOICES, describe: 'tfjs backend' },
  logFile: { flag: 'log-file', kind: 'string', default: (p) => `logs/${p}.log`, describe: 'log file (rank 0; metrics go to <name>.metrics.jsonl)' },
  logFormat: { flag: 'log-format', kind: 'string', default: 'text', choices: ['text', 'json'], describe: 'console format' },
  collectiveTimeoutS: {
    flag: 'collective-timeout',
    kind: 'seconds',
    default: 300,
    describe: 'seconds a collective waits for its peers (0 or inf: no timeout)',
  },
  profile: { flag: 'profile', kind: 'string', default: null, describe: "write a Chrome trace of each rank's step phases to this .json file" },
  onNonfinite: {
    flag: 'on-nonfinite',
    kind: 'string',
    default: 'stop',
    choices: ['stop', 'skip'],
    describe: 'a NaN/infinite loss or gradient: stop the run, or skip that optimizer step',
  },
  maxConsecutiveSkips: {
    flag: 'max-consecutive-skips',
    kind: 'posint',
    default: 5,
    max: 2 ** 20,
    describe: 'with --on-nonfinite skip: this many skipped steps in a row end the run',
  },
  tolerateCheckpointErrors: {
    flag: 'tolerate-checkpoint-errors',
    kind: 'bool',
    default: false,
    describe: 'a failed checkpoint write warns and training goes on',
  },
  tensorParallelSize: {
    flag: 'tensor-parallel-size',
    kind: 'posint',
    default: 1,
    describe: 'ranks per tensor-parallel group (divides the world size, --n-heads, --d-ff); the rest is data parallel',
  },
  useTensorParallel: {
    flag: 'use-tensor-parallel',
    kind: 'bool',
    default: false,
    describe: "tensor parallelism over all ranks (the original's flag: --tensor-parallel-size = world size)",
  },
} as const satisfies Record<Exclude<keyof TrainConfig, 'program' | 'metricsFile'>, OptionSpec>;

type OptionKey = keyof typeof OPTIONS;

function defaultOf(spec: OptionSpec, program: ProgramName): number | string | boolean | null {
  return typeof spec.default === 'function' ? spec.default(program) : spec.default;
}

/** `--help` text for a program. */
export function trainUsage(program: ProgramName): string {
  const lines = Object.values(OPTIONS as Record<OptionKey, OptionSpec>).map((o) => {
    const d = defaultOf(o, program);
    const flag = o.kind === 'bool' && d === true ? `--no-${o.flag}` : `--${o.flag}`;
    return `  ${flag.padEnd(28)} ${o.describe}${o.kind === 'bool' ? '' : ` (default: ${d === null ? 'off' : String(d)})`}`;
  });
  return [`usage: ${program} [options]`, '', ...lines].join('\n');
}

/** True when argv asks for help instead of a run. */
export function wantsHelp(argv: readonly string[]): boolean {
  return argv.includes('--help') || argv.includes('-h');
}

/**
 * yargs reads `--drop-last=<anything>` as false unless it says "true": refuse values that are not
 * true or false (a bare flag, `--no-<flag>`, or `--<flag>=true|false` are the ways to write one).
 */
function checkBooleanValues(argv: readonly string[]): void {
  for (const spec of Object.values(OPTIONS as Record<OptionKey, OptionSpec>)) {
    if (spec.kind !== 'bool') continue;
    for (const name of [spec.flag, `no-${spec.flag}`]) {
      const prefix = `--${name}=`;
      const given = argv.find((a) => a.startsWith(prefix));
      const value = given?.slice(prefix.length);
      if (value !== undefined && value !== 'true' && value !== 'false') {
        throw new ConfigError(`--${name}=${value} is not true or false`, `write --${spec.flag} or --no-${spec.flag}`);
      }
    }
  }
}

function convert(spec: OptionSpec, raw: unknown): number | string | boolean {
  const flag = `--${spec.flag}`;
  if (spec.kind === 'bool') return raw as boolean;
  const text = typeof raw === 'number' ? String(raw) : (raw as string);
  if (text === '') throw new ConfigError(`${flag} needs a value`, `write ${flag} <value>`);
  if (spec.kind === 'string') {
    if (spec.choices && !spec.choices.includes(text)) {
      throw new ConfigError(`${flag} ${text} is not one of ${spec.choices.join(', ')}`, `pass ${flag} ${spec.choices[0]}`);
    }
    return text;
  }
  if (spec.kind === 'seconds') {
    const s = parseSeconds(text);
    if (!(s >= 0))
      throw new ConfigError(
        `${flag} ${JSON.stringify(text)} is not a number of seconds`,
        `pass seconds, e.g. ${flag} ${String(spec.default)}, or ${flag} inf for no timeout`,
      );
    // Infinity is stored as 0 (JSON has no Infinity; the resolved config is logged and checkpointed).
    return s === Infinity ? 0 : s;
  }
  const n = Number(text);
  if (!Number.isFinite(n) || text.trim() === '') {
    throw new ConfigError(`${flag} ${JSON.stringify(text)} is not a number`, `pass a number, e.g. ${flag} ${String(spec.default)}`);
  }
  if (spec.kind === 'float') return n;
  if (!Number.isSafeInteger(n)) throw new ConfigError(`${flag} ${text} is not an integer`, `pass a whole number to ${flag}`);
  const min = spec.min ?? (spec.kind === 'posint' ? 1 : 0);
  const max = spec.max ?? 0xffffffff;
  if (n < min) throw new ConfigError(`${flag} ${text} must be at least ${min}`, `pass ${flag} ${min} or more`);
  if (n > max) throw new ConfigError(`${flag} ${text} is more than ${max}`, `pass ${flag} ${max} or less`);
  return n;
}

/** Cross-field rules: ranges of floats and options that contradict each other. */
function validate(c: TrainConfig): void {
  if (!(c.dropout >= 0 && c.dropout < 1)) {
    throw new ConfigError(`--dropout ${c.dropout} is outside [0, 1)`, 'pass a probability such as --dropout 0.1 (0 disables it)');
  }
  // 0 is allowed, as by torch.optim.AdamW: a frozen run (weights unchanged) is a common check.
  if (!(c.lr >= 0)) throw new ConfigError(`--lr ${c.lr} must be 0 or more`, 'pass e.g. --lr 3e-4 (--lr 0 trains nothing)');
  if (!(c.weightDecay >= 0)) throw new ConfigError(`--weight-decay ${c.weightDecay} must be 0 or more`, 'pass e.g. --weight-decay 0.01');
  if (c.dModel % c.nHeads !== 0) {
    throw new ConfigError(
      `--d-model ${c.dModel} is not divisible by --n-heads ${c.nHeads}`,
      `pick --d-model a multiple of --n-heads (e.g. --d-model ${Math.ceil(c.dModel / c.nHeads) * c.nHeads})`,
    );
  }
  if (c.seqLen > c.maxPositionEmbeddings) {
    throw new ConfigError(
      `--seq-len ${c.seqLen} is longer than --max-position-embeddings ${c.maxPositionEmbeddings}`,
      `pass --seq-len ${c.maxPositionEmbeddings} or less, or raise --max-position-embeddings`,
    );
  }
  for (const [name, flag, v] of [
    ['n-heads', '--n-heads', c.nHeads],
    ['d-ff', '--d-ff', c.dFf],
  ] as const) {
    if (v % c.tensorParallelSize !== 0) {
      throw new ConfigError(
        `--tensor-parallel-size ${c.tensorParallelSize} does not divide ${flag} ${v}`,
        `pick a --tensor-parallel-size that divides --${name} (each rank owns whole heads and an equal share of the MLP)`,
      );
    }
  }
  if (c.seqLen < 2) throw new ConfigError(`--seq-len ${c.seqLen} predicts nothing`, 'pass --seq-len 2 or more (T tokens give T-1 predictions)');
  if (!(c.bucketMb > 0 && c.bucketMb <= 1024)) {
    throw new ConfigError(`--bucket-mb ${c.bucketMb} is outside (0, 1024]`, 'pass a size in MiB such as --bucket-mb 1');
  }
  if (c.zero !== 0 && c.zero !== 1)
    throw new ConfigError(`--zero ${c.zero} is not a ZeRO stage this trainer has`, 'pass --zero 0 (no sharding) or --zero 1 (sharded optimizer state)');
  if (c.allreduceTopology === 'hierarchical' && c.program === 'train_minimal') {
    throw new ConfigError('--allreduce-topology hierarchical does nothing in train_minimal (one process)', 'run train_ddp across hosts, or drop the flag');
  }
  if (c.allreduceTopology === 'hierarchical' && c.zero !== 0) {
    throw new ConfigError(
      `--allreduce-topology hierarchical is not combined with --zero ${c.zero}: ZeRO's reduce-scatter and all-gather run on the flat ring`,
      'pass --allreduce-topology auto or flat with --zero 1 (auto then runs flat)',
    );
  }
  if (c.allreduceTopology === 'hierarchical' && c.overlap) {
    throw new ConfigError(
      "--allreduce-topology hierarchical is not combined with --overlap: overlap's buckets keep the flat ring's bits",
      'pass --allreduce-topology auto or flat with --overlap (auto then runs flat)',
    );
  }
  if (c.allreduceTopology === 'hierarchical' && (c.tensorParallelSize > 1 || c.useTensorParallel)) {
    throw new ConfigError(
      '--allreduce-topology hierarchical is not combined with tensor parallelism: its gradient all-reduce runs on the DP groups',
      'pass --allreduce-topology auto or flat with --tensor-parallel-size (auto then runs flat)',
    );
  }
  if (!/^(toy(:\d+)?|brown|text:.+)$/.test(c.dataset)) {
    throw new ConfigError(`--dataset ${c.dataset} is not a dataset`, 'pass --dataset toy, toy:<samples>, brown or text:<path>');
  }
}

/** Options that the chosen dataset ignores: refused, so that a run does not silently train otherwise than asked. */
function checkDatasetOptions(c: TrainConfig, given: (flag: string) => boolean): void {
  if (c.dataset.startsWith('toy') && given('tokenizer')) {
    throw new ConfigError(
      `--tokenizer ${c.tokenizer} does nothing with --dataset ${c.dataset} (random token ids, no text)`,
      'pass --dataset brown or text:<path> to tokenize text, or drop --tokenizer',
    );
  }
}

/**
 * `--lr -1e-3` as `--lr=-1e-3`: yargs takes a negative number for a value only in plain decimal
 * form (-1, -0.5) and splits "-1e-3" into the short flags -1, -e, -3, so a negative value in
 * exponent form would be misread as unknown options instead of getting its range check. No flag
 * of ours starts with a digit, so a token "-<number>" after "--name" is always that flag's value.
 */
function joinSignedValues(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = argv[i + 1];
    if (/^--[^=]+$/.test(a) && next !== undefined && /^-(\d|\.\d)/.test(next) && Number.isFinite(Number(next))) {
      out.push(`${a}=${next}`);
      i += 1;
    } else {
      out.push(a);
    }
  }
  return out;
}

/**
 * --overlap is not combined with --zero 1 or tensor parallelism (their collectives are not
 * bucketed): refused when given; off there whatever the default.
 */
function resolveOverlap(values: Record<string, unknown>, given: boolean): void {
  const other =
    values.zero !== 0
      ? `--zero ${String(values.zero)}`
      : values.tensorParallelSize !== 1 || values.useTensorParallel === true
        ? 'tensor parallelism'
        : undefined;
  if (other === undefined || values.overlap !== true) return;
  if (given) {
    throw new ConfigError(`--overlap is not combined with ${other} yet (its collectives are not bucketed)`, `leave out --overlap, or drop ${other}`);
  }
  values.overlap = false;
}

/** Parse a training program's flags (argv without node and the script). Throws ConfigError. */
export function parseTrainConfig(argv: readonly string[], program: ProgramName): TrainConfig {
  let parser = yargs(joinSignedValues(argv))
    .strict()
    .help(false)
    .version(false)
    .exitProcess(false)
    .parserConfiguration({ 'duplicate-arguments-array': false })
    .fail((msg: string | null, err?: Error) => {
      const unknown = /^Unknown arguments?: (.*)$/.exec(msg ?? '');
      if (unknown) {
        const written = (n: string) => argv.some((a) => a === `--${n}` || a.startsWith(`--${n}=`) || a === `-${n}`);
        const names = unknown[1].split(', ').map((n) => (written(n) ? `--${n}` : n));
        throw new ConfigError(`unknown option ${names.join(', ')} for ${program}`, 'run with --help to list the options');
      }
      throw new ConfigError(`bad options for ${program}: ${msg ?? err?.message ?? 'unknown error'}`, 'run with --help to list the options');
    });
  for (const spec of Object.values(OPTIONS as Record<OptionKey, OptionSpec>)) {
    parser = parser.option(spec.flag, { type: spec.kind === 'bool' ? 'boolean' : 'string' });
  }
  checkBooleanValues(argv);
  const parsed = parser.parseSync() as Record<string, unknown>;
  if (parsed._ instanceof Array && parsed._.length > 0) {
    throw new ConfigError(`unexpected argument ${String(parsed._[0])} for ${program}`, 'options are written --name value; run with --help');
  }
  const values: Record<string, unknown> = { program };
  for (const [key, spec] of Object.entries(OPTIONS as Record<OptionKey, OptionSpec>)) {
    const raw = parsed[spec.flag];
    values[key] = raw === undefined ? defaultOf(spec, program) : convert(spec, raw);
  }
  resolveOverlap(values, parsed.overlap !== undefined);
  const logFile = values.logFile as string;
  values.metricsFile = `${logFile.replace(/\.log$/, '')}.metrics.jsonl`;
  const config = Object.freeze(values) as unknown as TrainConfig;
  validate(config);
  checkDatasetOptions(config, (flag) => parsed[flag] !== undefined);
  return config;
}

/**
 * The topology to ask comm/hierarchical.ts for, and why (for the log line): --allreduce-topology,
 * except that 'auto' is 'flat' under --zero 1 (its collectives are the flat ring's reduce-scatter
 * and all-gather), under tensor parallelism (the gradients are all-reduced over the DP groups) and
 * under --overlap (its buckets get the flat ring's bits of the whole buffer).
 */
export function allReduceTopologyOf(c: TrainConfig): { choice: TopologyChoice; why?: string } {
  if (c.allreduceTopology !== 'auto') return { choice: c.allreduceTopology };
  if (c.zero !== 0) return { choice: 'flat', why: `auto; --zero ${c.zero} runs on the flat ring` };
  if (c.tensorParallelSize > 1 || c.useTensorParallel) return { choice: 'flat', why: 'auto; tensor parallelism all-reduces over its DP groups' };
  if (c.overlap) return { choice: 'flat', why: "auto; --overlap's buckets run on the flat ring" };
  return { choice: 'auto' };
}

/** The fields that fix the model's parameter shapes; a checkpoint must match them all. */
export const MODEL_SHAPE_FIELDS = ['vocabSize', 'maxPositionEmbeddings', 'nLayers', 'nHeads', 'dModel', 'dFf'] as const;

/** The flag of a TrainConfig field, for messages ("--d-model"). */
export function flagOf(key: OptionKey): string {
  return `--${OPTIONS[key].flag}`;
}

export function gptConfigOf(c: TrainConfig): GPTConfig {
  return {
    vocabSize: c.vocabSize,
    maxPositionEmbeddings: c.maxPositionEmbeddings,
    nLayers: c.nLayers,
    nHeads: c.nHeads,
    dModel: c.dModel,
    dFf: c.dFf,
    dropout: c.dropout,
  };
}

/**
 * The tensor-parallel size of a run of `worldSize` ranks: --use-tensor-parallel means the world
 * size (and contradicts another --tensor-parallel-size); ConfigError unless it divides the world
 * size, --n-heads and --d-ff.
 */
export function tensorParallelSizeOf(c: TrainConfig, worldSize: number): number {
  if (c.useTensorParallel && c.tensorParallelSize !== 1 && c.tensorParallelSize !== worldSize) {
    throw new ConfigError(
      `--use-tensor-parallel means --tensor-parallel-size ${worldSize} (the world size), but --tensor-parallel-size ${c.tensorParallelSize} was given`,
      'pass one of the two',
    );
  }
  const tp = c.useTensorParallel ? worldSize : c.tensorParallelSize;
  if (tp > 1 && c.zero !== 0) {
    throw new ConfigError(
      `--zero ${c.zero} is not combined with tensor parallelism (tp ${tp}) yet`,
      'pass --zero 0 with --tensor-parallel-size, or drop tensor parallelism',
    );
  }
  if (worldSize % tp !== 0) {
    throw new ConfigError(
      `--tensor-parallel-size ${tp} does not divide the world size ${worldSize}`,
      `start a multiple of ${tp} workers, or pass a divisor of ${worldSize}`,
    );
  }
  if (c.nHeads % tp !== 0 || c.dFf % tp !== 0) {
    throw new ConfigError(
      `tensor-parallel size ${tp} (--use-tensor-parallel: the world size) does not divide --n-heads ${c.nHeads} and --d-ff ${c.dFf}`,
      'pick a world size that divides both',
    );
  }
  return tp;
}
