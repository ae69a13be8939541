/**
 * The training options' rules across fields: ranges of floats, options that contradict each other,
 * options that the chosen dataset ignores, and --overlap where its collectives are not bucketed.
 *
 * Apart from the parser (config.ts) because these read the whole config, not one flag; each raises
 * a ConfigError naming the flag and the fix.
 */
import { ConfigError } from '../shared/errors.js';
import type { TrainConfig } from './config_options.js';

/** Cross-field rules: ranges of floats and options that contradict each other. */
export function validate(c: TrainConfig): void {
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
export function checkDatasetOptions(c: TrainConfig, given: (flag: string) => boolean): void {
  if (c.dataset.startsWith('toy') && given('tokenizer')) {
    throw new ConfigError(
      `--tokenizer ${c.tokenizer} does nothing with --dataset ${c.dataset} (random token ids, no text)`,
      'pass --dataset brown or text:<path> to tokenize text, or drop --tokenizer',
    );
  }
}

/**
 * --overlap is not combined with --zero 1 or tensor parallelism (their collectives are not
 * bucketed): refused when given; off there whatever the default.
 */
export function resolveOverlap(values: Record<string, unknown>, given: boolean): void {
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
