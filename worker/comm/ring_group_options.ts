/**
 * How a RingGroup (ring_group.ts) is made: its options and their defaults, the seams injected
 * besides the transport (transport.ts) — the peer control and the subgroup factory — and the
 * all-reduce algorithm it chooses by size.
 */
import type { ProcessGroup } from './process_group.js';
import type { Reducer } from './reduce.js';
import type { RankStatus } from './stall.js';
import type { RingTransport } from './transport.js';

/** The group's link to its peers outside the ring's data path. */
export interface PeerControl {
  /** Ask every other rank for its status; resolves after at most `windowMs` with the answers. */
  probe(windowMs: number): Promise<ReadonlyMap<number, RankStatus>>;
  /** Tell every other rank that the group failed (best effort, bounded in time). */
  abort(message: string): Promise<void>;
  /**
   * Release sockets and files. `flush`: the last collective succeeded, so let its last queued
   * messages leave first (bounded); otherwise drop them.
   */
  close(flush: boolean): Promise<void>;
}

export interface RingGroupOptions {
  readonly rank: number;
  readonly worldSize: number;
  readonly transport: RingTransport;
  readonly control: PeerControl;
  /** Segment size in bytes; default 1 MiB. */
  readonly segmentBytes?: number;
  /** A collective still waiting after this long (ms) fails on every rank; default 300 s; Infinity: never. */
  readonly collectiveTimeoutMs?: number;
  /** All-reduces moving at most this many bytes per rank as an all-gather take that path; default 64 KiB. */
  readonly gatherBytes?: number;
  /** Force one all-reduce algorithm (tests, benchmarks); default 'auto' (chooseAllReduce). */
  readonly allReduceAlgorithm?: AllReduceAlgorithm | 'auto';
  readonly reducer?: Reducer;
  /**
   * How errors name this group when it is a subgroup, e.g. "tp group 1 (world ranks 2, 3)": its
   * ranks are group ranks, so every error says which group it is about. Default: none (the world).
   */
  readonly label?: string;
  /** Makes the subgroups of newGroup (transport and peer control of their own); absent: newGroup fails. */
  readonly subgroups?: SubgroupFactory;
  /** The host of a rank, for error messages ("10.77.0.12, node n2/1"); default: not named. */
  readonly hostOf?: (rank: number) => string | undefined;
}

/**
 * How an all-reduce runs (ring.ts):
 *   'ring'   reduce-scatter then all-gather, 2(N-1) steps, moving 2(N-1)/N of the buffer per
 *            rank: bandwidth-optimal, for everything but small buffers;
 *   'gather' all-gather of whole buffers then every rank reduces them in rank order, N-1 steps,
 *            moving (N-1) buffers per rank: fewer hops, for small buffers where latency decides.
 * Both give every rank the same bits. All ranks must choose alike (same options).
 */
export type AllReduceAlgorithm = 'ring' | 'gather';

/**
 * The group's choice for an all-reduce of `bytes` per rank: 'gather' when the all-gather would
 * move at most `gatherBytes` per rank ((N-1) × bytes), else 'ring'.
 */
export function chooseAllReduce(bytes: number, worldSize: number, gatherBytes: number): AllReduceAlgorithm {
  return (worldSize - 1) * bytes <= gatherBytes ? 'gather' : 'ring';
}

/**
 * Creates the group over `ranks` (ranks of `parent`) as a collective of `parent`; `id` counts the
 * parent's newGroup calls (the same on every rank). Members get their group, the others undefined.
 */
export type SubgroupFactory = (parent: ProcessGroup, ranks: readonly number[], id: number) => Promise<ProcessGroup | undefined>;

export const DEFAULT_SEGMENT_BYTES = 1 << 20;
export const DEFAULT_GATHER_BYTES = 64 << 10;
export const DEFAULT_COLLECTIVE_TIMEOUT_MS = 300_000;
