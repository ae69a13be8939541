/**
 * Views derived from a parsed `TrainConfig`: the model's shape (`gptConfigOf`, and the fields a
 * checkpoint must match), the all-reduce topology to ask for, and the tensor-parallel size of a
 * run of a given world size.
 *
 * Apart from the parser (config.ts) because they are read by the trainer and the checkpoints once
 * a run knows more than its flags (the world size, for one).
 */
import { ConfigError } from '../shared/errors.js';
import type { TopologyChoice } from './comm/hierarchical.js';
import type { GPTConfig } from './model/gpt.js';
import type { TrainConfig } from './config_options.js';

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
