/**
 * N ranks of a RingGroup in one process: the in-memory transport plus a peer control that reads
 * the other groups directly. For tests of the ring and of the group's failure handling without
 * processes or sockets. `unresponsive` ranks neither answer probes nor receive aborts, as a
 * stopped process would.
 */
import { CommError } from '../../shared/errors.js';
import { SingleProcessGroup } from './process_group.js';
import { RingGroup } from './ring_group.js';
import type { AllReduceAlgorithm, SubgroupFactory } from './ring_group_options.js';
import type { Reducer } from './reduce.js';
import type { RankStatus } from './stall.js';
import { createInMemoryRing } from './transport.js';

export interface MemoryGroupOptions {
  readonly segmentBytes?: number;
  readonly gatherBytes?: number;
  readonly allReduceAlgorithm?: AllReduceAlgorithm | 'auto';
  readonly collectiveTimeoutMs?: number;
  readonly reducer?: Reducer;
  readonly unresponsive?: readonly number[];
  /** Delivery delays of the in-memory links (see createInMemoryRing). */
  readonly maxDelayMs?: number;
  readonly seed?: number;
  /** The transport reuses released memory as ZeroMQ's does (createInMemoryRing's `recycle`). */
  readonly recycle?: boolean;
}

/**
 * Element r is rank r's group. newGroup works on them as on the ZeroMQ groups: the k-th call of
 * every rank builds (once, for all members) a memory ring of its own over the ranks given.
 */
export function createMemoryGroups(worldSize: number, opts: MemoryGroupOptions = {}, label?: string): RingGroup[] {
  const made = new Map<number, { key: string; groups: RingGroup[] }>();
  const subgroups: SubgroupFactory = async (parent, ranks, id) => {
    const key = ranks.join(',');
    let entry = made.get(id);
    if (entry === undefined) {
      const members = ranks.filter((r) => !silent.has(r));
      const sub = { ...opts, unresponsive: members.length === ranks.length ? [] : ranks.flatMap((r, i) => (silent.has(r) ? [i] : [])) };
      entry = { key, groups: createMemoryGroups(ranks.length, sub, `group ${id} (ranks ${key})`) };
      made.set(id, entry);
    }
    if (entry.key !== key) {
      throw new CommError(
        `newGroup #${id}: rank ${parent.rank} asked for ranks [${key}], another rank for [${entry.key}]`,
        'every rank must pass the same ranks',
      );
    }
    const i = ranks.indexOf(parent.rank);
    if (i < 0) return undefined;
    return ranks.length === 1 ? new SingleProcessGroup() : entry.groups[i];
  };
  const transports = createInMemoryRing(worldSize, { maxDelayMs: opts.maxDelayMs, seed: opts.seed, recycle: opts.recycle });
  const silent = new Set(opts.unresponsive ?? []);
  const groups: RingGroup[] = [];
  const others = (self: number): RingGroup[] => groups.filter((g) => g.rank !== self && !silent.has(g.rank));
  for (let rank = 0; rank < worldSize; rank++) {
    groups.push(
      new RingGroup({
        rank,
        worldSize,
        transport: transports[rank],
        segmentBytes: opts.segmentBytes,
        gatherBytes: opts.gatherBytes,
        allReduceAlgorithm: opts.allReduceAlgorithm,
        collectiveTimeoutMs: opts.collectiveTimeoutMs,
        reducer: opts.reducer,
        label,
        subgroups,
        control: {
          probe: async () => new Map<number, RankStatus>(others(rank).map((g) => [g.rank, g.status()])),
          abort: async (message) => others(rank).forEach((g) => g.abortedBy(rank, message)),
          close: async () => {},
        },
      }),
    );
  }
  return groups;
}
