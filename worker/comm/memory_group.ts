/**
 * N ranks of a RingGroup in one process: the in-memory transport plus a peer control that reads
 * the other groups directly. For tests of the ring and of the group's failure handling without
 * processes or sockets. `unresponsive` ranks neither answer probes nor receive aborts, as a
 * stopped process would.
 */
import { RingGroup, type AllReduceAlgorithm } from './ring_group.js';
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
}

/** Element r is rank r's group. */
export function createMemoryGroups(worldSize: number, opts: MemoryGroupOptions = {}): RingGroup[] {
  const transports = createInMemoryRing(worldSize, { maxDelayMs: opts.maxDelayMs, seed: opts.seed });
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
