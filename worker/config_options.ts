/**
 * The training programs' option table: the `TrainConfig` fields, one flag each (kebab-case, the
 * Python original's names and defaults, plus ours), their kinds, defaults and one line of help.
 *
 * Its own module because everything about a flag is read from here: the usage text (`--help`), the
 * parser (config.ts), and messages that name a field's flag (`flagOf`). Validation lives in
 * config_rules.ts, views derived from a parsed config in config_views.ts.
 */
import { BACKEND_CHOICES, type BackendChoice } from './backend_choice.js';
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
   * The token embedding's gradient as the rows this step's tokens touched (ddp_sparse.ts), where
   * that moves at most half the dense rows' bytes. Off by default, as PyTorch's embeddings are
   * dense unless `sparse=True`: with 3+ ranks or a 16-bit wire its sums round differently.
   */
  readonly sparseEmbeddingGrad: boolean;
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
export interface OptionSpec {
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
export const OPTIONS = {
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
  sparseEmbeddingGrad: {
    flag: 'sparse-embedding-grad',
    kind: 'bool',
    default: false,
    describe:
      "all-reduce only the token embedding gradient's rows that the step's tokens looked up (PyTorch's sparse=True embedding), where that moves fewer bytes",
  },
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

export type OptionKey = keyof typeof OPTIONS;

export function defaultOf(spec: OptionSpec, program: ProgramName): number | string | boolean | null {
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

/** The flag of a TrainConfig field, for messages ("--d-model"). */
export function flagOf(key: OptionKey): string {
  return `--${OPTIONS[key].flag}`;
}
