/**
 * Which sample indices each rank trains on, with PyTorch's DistributedSampler semantics:
 *   - every epoch, a permutation of 0..N-1 seeded by `seed + epoch`, identical on all ranks;
 *   - padded by wrapping around to `numSamples * worldSize` indices (so every rank gets the same
 *     count), or, with `dropLast`, cut to the largest multiple of worldSize;
 *   - rank r's shard is `indices[r::worldSize]`.
 * `ShardStream` walks one rank's shards epoch after epoch, so the training loop asks for the next
 * `batchSize` indices and never forgets to reshuffle (no `set_epoch`). A batch may straddle two
 * epochs: batches keep a fixed size.
 */
import { ConfigError } from '../../shared/errors.js';
import { permutation } from '../rng.js';

export interface SamplerOptions {
  readonly worldSize: number;
  readonly rank: number;
  readonly seed: number;
  /** false: the identity order every epoch (evaluation-style). Default true. */
  readonly shuffle?: boolean;
  readonly dropLast?: boolean;
}

export class DistributedSampler {
  /** Indices per rank per epoch. */
  readonly numSamples: number;
  /** numSamples × worldSize: the padded (or cut) epoch length. */
  readonly totalSize: number;
  private readonly opts: Required<SamplerOptions>;

  constructor(
    readonly size: number,
    opts: SamplerOptions,
  ) {
    this.opts = { shuffle: true, dropLast: false, ...opts };
    const { worldSize, rank, dropLast } = this.opts;
    if (!(rank >= 0 && rank < worldSize)) throw new RangeError(`rank ${rank} is not in [0, ${worldSize})`);
    this.numSamples = dropLast && size % worldSize !== 0 ? Math.floor(size / worldSize) : Math.ceil(size / worldSize);
    this.totalSize = this.numSamples * worldSize;
    if (this.numSamples === 0) {
      throw new ConfigError(
        `the training split has ${size} samples, too few for ${worldSize} ranks${dropLast ? ' with --drop-last' : ''}`,
        'use a larger dataset or fewer workers',
      );
    }
  }

  /** The whole padded/cut order of `epoch` (all ranks), length totalSize. */
  epochOrder(epoch: number): Uint32Array {
    const { shuffle, seed } = this.opts;
    const base = shuffle ? permutation(this.size, (seed + epoch) >>> 0) : Uint32Array.from({ length: this.size }, (_, i) => i);
    if (this.totalSize <= this.size) return base.subarray(0, this.totalSize);
    // Pad by wrapping: repeat the order from its start as often as needed.
    const out = new Uint32Array(this.totalSize);
    for (let i = 0; i < this.totalSize; i++) out[i] = base[i % this.size];
    return out;
  }

  /** This rank's shard of `epoch`: epochOrder(epoch)[rank::worldSize], length numSamples. */
  shard(epoch: number): Uint32Array {
    const { worldSize, rank } = this.opts;
    const order = this.epochOrder(epoch);
    const out = new Uint32Array(this.numSamples);
    for (let i = 0; i < this.numSamples; i++) out[i] = order[rank + i * worldSize];
    return out;
  }
}

/** Where a rank stands in its stream of shards: the epoch, and how many of its indices it took. */
export interface SamplerState {
  readonly epoch: number;
  readonly position: number;
}

/** One rank's endless walk through its shards. */
export class ShardStream {
  private epoch: number;
  private position: number;
  private current: Uint32Array;

  constructor(
    private readonly sampler: DistributedSampler,
    start: SamplerState = { epoch: 0, position: 0 },
  ) {
    this.epoch = start.epoch + Math.floor(start.position / sampler.numSamples);
    this.position = start.position % sampler.numSamples;
    this.current = sampler.shard(this.epoch);
  }

  /** The next `n` indices of this rank, moving to the next epoch (reshuffled) when one ends. */
  take(n: number): number[] {
    const out: number[] = [];
    while (out.length < n) {
      if (this.position === this.current.length) {
        this.epoch += 1;
        this.position = 0;
        this.current = this.sampler.shard(this.epoch);
      }
      out.push(this.current[this.position]);
      this.position += 1;
    }
    return out;
  }

  state(): SamplerState {
    return { epoch: this.epoch, position: this.position };
  }
}

/**
 * Carry a sampler state saved by `fromWorldSize` ranks over to `toWorldSize` ranks: the same epoch,
 * at the same share of it (each rank had taken `position` of its shard; globally that is
 * position × fromWorldSize samples of the epoch).
 */
export function rescaleSamplerState(s: SamplerState, fromWorldSize: number, toWorldSize: number): SamplerState {
  if (fromWorldSize === toWorldSize) return s;
  return { epoch: s.epoch, position: Math.floor((s.position * fromWorldSize) / toWorldSize) };
}
