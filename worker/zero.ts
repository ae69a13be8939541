/**
 * ZeRO stage 1 (`--zero 1`, PyTorch's ZeroRedundancyOptimizer): the optimizer state is sharded
 * over the ranks. Per step:
 *   1. reduce-scatter the step buffer (ddp.ts averageGradientShards): rank r gets the average of
 *      its shard only, chunk r of the step buffer's numParams + 1 floats (comm shardRange);
 *   2. AdamW on that shard only: m and v exist for 1/N of the parameters, and 1/N of the work;
 *   3. all-gather the parameters' shards (allGatherChunks), so every rank has the whole model.
 * Reduce-scatter + all-gather move the bytes of one all-reduce (its two phases, ring.ts), and
 * every element gets the same bits as in the unsharded run: the shards are the all-reduce's
 * chunks of the same numParams + 1 floats (hence the parameters live in an array of that length
 * too, `params`, whose last float is spare), so each is reduced in the same order, and AdamW is
 * element-wise.
 *
 * Checkpoints hold the whole state: `consolidate` gathers m and v to rank 0 before saving (as
 * PyTorch's consolidate_state_dict(to=0)), and `load` takes this rank's shard of a whole state,
 * so a checkpoint loads into any world size, with or without --zero.
 */
import type { Range } from './comm/chunks.js';
import { shardRange } from './comm/chunks.js';
import type { ProcessGroup } from './comm/process_group.js';
import type { OptimizerState } from './checkpoint.js';
import { AdamW, type AdamWConfig } from './optim.js';

/** Rank `rank`'s parameters [lo, hi): its chunk of the step buffer's numParams + 1 floats, without the loss. */
export function paramShard(numParams: number, worldSize: number, rank: number): Range {
  const { lo, hi } = shardRange(numParams + 1, worldSize, rank);
  return { lo: Math.min(lo, numParams), hi: Math.min(hi, numParams) };
}

export class ShardedAdamW {
  /** This rank's elements of the flat parameters [lo, hi). */
  readonly shard: Range;
  /** AdamW over the shard only (m, v of hi - lo floats). */
  readonly adam: AdamW;
  /** The flat parameters [numParams], the training loop's master copy. */
  readonly params: Float32Array;
  /** [params | 1 spare float]: what the all-gather sends, chunked as the step buffer. */
  private readonly flat: Float32Array;

  constructor(
    private readonly pg: ProcessGroup,
    readonly numParams: number,
    cfg: AdamWConfig,
  ) {
    this.shard = paramShard(numParams, pg.worldSize, pg.rank);
    this.adam = new AdamW(this.shard.hi - this.shard.lo, cfg);
    this.flat = new Float32Array(numParams + 1);
    this.params = this.flat.subarray(0, numParams);
  }

  get stepCount(): number {
    return this.adam.stepCount;
  }

  /** AdamW on this rank's shard of `params` from the same shard of `grads` (averageGradientShards). */
  step(grads: Float32Array): void {
    const { lo, hi } = this.shard;
    this.adam.step(this.params.subarray(lo, hi), grads.subarray(lo, hi));
  }

  /** Collective, after `step` on every rank: every rank's updated shard to every rank, in `params`. */
  async gatherParams(): Promise<void> {
    await this.pg.allGatherChunks(this.flat);
  }

  /**
   * Collective: the whole optimizer state on rank 0 (every rank's m and v shards in place), for
   * a checkpoint, in `into` when given (rank 0: the checkpoint image's own regions, so that no
   * whole copy of the moments exists beside it); the other ranks get empty moments (they write nothing). Each rank r > 0
   * broadcasts its shards in turn; the others receive into a scratch of its length, so no rank
   * but 0 holds more than its shard.
   */
  async consolidate(into?: { readonly m: Float32Array; readonly v: Float32Array }): Promise<OptimizerState> {
    const { pg, numParams, adam } = this;
    const root = pg.rank === 0;
    const m = root ? (into?.m ?? new Float32Array(numParams)) : new Float32Array(0);
    const v = root ? (into?.v ?? new Float32Array(numParams)) : new Float32Array(0);
    if (m.length !== (root ? numParams : 0) || v.length !== m.length)
      throw new RangeError(`consolidate: moments of ${m.length}, ${v.length} floats, need ${numParams}`);
    if (root) {
      m.set(adam.m, this.shard.lo);
      v.set(adam.v, this.shard.lo);
    }
    const lengths = Array.from({ length: pg.worldSize }, (_, r) => paramShard(numParams, pg.worldSize, r)).map((s) => s.hi - s.lo);
    const scratch = new Float32Array(root ? 0 : Math.max(...lengths));
    for (let r = 1; r < pg.worldSize; r++) {
      const { lo, hi } = paramShard(numParams, pg.worldSize, r);
      for (const [own, whole] of [
        [adam.m, m],
        [adam.v, v],
      ] as const) {
        const buf = pg.rank === r ? own.slice() : root ? whole.subarray(lo, hi) : scratch.subarray(0, hi - lo);
        await pg.broadcast(buf, r);
      }
    }
    return { stepCount: adam.stepCount, m, v };
  }

  /** This rank's shard of a whole optimizer state (from a checkpoint or an unsharded AdamW). */
  load(state: { readonly stepCount: number; readonly m: Float32Array; readonly v: Float32Array }): void {
    const { lo, hi } = this.shard;
    this.adam.m.set(state.m.subarray(lo, hi));
    this.adam.v.set(state.v.subarray(lo, hi));
    this.adam.stepCount = state.stepCount;
  }
}
