/**
 * Hierarchical all-reduce (Horovod's HOROVOD_HIERARCHICAL_ALLREDUCE, NCCL's tree of rings): when a
 * run spans H hosts of L workers each, the gradient all-reduce crosses the slow link once per
 * host pair instead of once per ring hop. Built from two kinds of subgroups of the world
 * (newGroup, zmq/zmq_subgroup.ts):
 *   host groups   the L workers of one host, by local rank: their ring runs over ipc://;
 *   cross groups  the H workers with one local rank, one per host, by node rank: over tcp://.
 * A large all-reduce of B bytes (from `minBytes`, 4 MiB; between `smallBytes` and that, the
 * world's flat ring, faster there) is cut into pieces of about 4 MiB (at most 8), and each piece
 * is three collectives:
 *   1. reduce-scatter within the host (float32 or float64, never compressed): local rank l ends
 *      with its host's reduction of shard l (shardRange(count, L, l), chunks.ts), B/L bytes;
 *   2. all-reduce of shard l over cross group l (with compression, only this hop is compressed:
 *      the bytes that cross the slow link halve, the ipc hops stay float32);
 *   3. all-gather of the shards within the host.
 * pipelined: while the cross group all-reduces piece i (the link), the host group reduce-scatters
 * piece i+1 and all-gathers piece i-1 (the CPU). The two groups are separate rings, so they run at
 * the same time; each group's own collectives stay one at a time, in an order fixed by the number
 * of pieces alone (host: RS 0, RS 1, AG 0, RS 2, AG 1, ..., AG m-1; cross: AR 0, AR 1, ...), the
 * same on every rank.
 * Per host, 2(H-1)/H · B leave over the link (L cross rings, each moving 2(H-1)/H of B/L per
 * rank); the flat ring of N = HL ranks (contiguous per host) sends 2(N-1)/N · B over the one ring
 * hop that leaves each host: 2 hosts × 2 workers, B against 1.5 B. And the cross rings are H
 * ranks long instead of N, so an all-reduce waits for fewer link delays.
 * A small all-reduce (at most `smallBytes`: the eval's two floats, the checks' flags, barriers)
 * is two: an all-reduce within the host, then one across hosts of the whole (tiny) buffer —
 * one crossing of the link where the flat ring's gather path crosses it on several of its N-1
 * steps in a row.
 *
 * Exactness: every rank ends with the same bits. Step 1 gives shard l one value per host; step 2
 * gives it one value on every member of cross group l (each ring reduces every element once, by
 * its owner, and copies it: ring.ts), the same whatever the host; step 3 copies. The small path
 * likewise. The result equals the flat ring's within float32 (float64) rounding: the same sum,
 * taken in another order (host by host, then across hosts), so the last bits may differ. `mean`
 * is a mean within the host then across hosts (hosts are the same size: the same value up to
 * rounding). `max`/`min` are exact.
 *
 * Everything but the all-reduce and the barrier goes to the world group as it is (broadcast,
 * allGather, newGroup) — including ZeRO's reduceScatter and allGatherChunks, whose shards are the
 * world's chunks (chunks.ts shardRange over N ranks, the layout the sharded optimizer and its
 * checkpoints use) and which therefore run on the flat ring. Their bits then differ from this
 * group's all-reduce, so the trainer runs --zero 1 on the flat world group (config.ts).
 *
 * Failures: each subgroup has its own timeout and diagnostics (they name the group: "group 3
 * (world ranks 0, 2)"); a rank that fails ends its process, and its peers' rings notice the
 * closed connections (ring_group.ts suspect) and fail too.
 */
import { ConfigError } from '../../shared/errors.js';
import type { CollectiveRecord } from '../../shared/error_file.js';
import { chunkRange, shardRange, type BufferWindow, type Range } from './chunks.js';
import { allGatherJson, type FloatArray, type NumericArray, type ProcessGroup, type ReduceOp } from './process_group.js';
import type { Compression } from './wire.js';

export const TOPOLOGY_CHOICES = ['auto', 'flat', 'hierarchical'] as const;
export type TopologyChoice = (typeof TOPOLOGY_CHOICES)[number];
export type AllReduceTopology = Exclude<TopologyChoice, 'auto'>;

/** Where a rank runs, from the launcher's environment (shared/env.ts: GROUP_RANK, LOCAL_RANK, LOCAL_WORLD_SIZE). */
export interface Place {
  readonly nodeRank: number;
  readonly localRank: number;
  readonly localWorldSize: number;
}

/** All-reduces of at most this many bytes take the small path (two collectives); default 64 KiB. */
export const DEFAULT_HIERARCHICAL_SMALL_BYTES = 64 << 10;
/** A large all-reduce is cut into pieces of about this many bytes (at most MAX_PIECES), pipelined. */
export const PIECE_BYTES = 4 << 20;
/**
 * All-reduces above the small path's size and below this many bytes run on the world's flat
 * ring: one piece, three collectives in a row with nothing to pipeline, measured slower than the
 * flat ring at 1 MiB (0.85–0.95×, 2 hosts × 2 workers, 1 Gbit + 2.5 ms; README "Across machines")
 * while from 16 MiB on the hierarchical one wins. Every rank chooses by size alike.
 */
export const DEFAULT_HIERARCHICAL_MIN_BYTES = PIECE_BYTES;
export const MAX_PIECES = 8;

/** The pieces [lo, hi) of a buffer of `count` elements of `size` bytes: ceil(bytes / PIECE_BYTES), 1..MAX_PIECES. */
export function piecesOf(count: number, size: number): Range[] {
  const n = Math.max(1, Math.min(MAX_PIECES, Math.ceil((count * size) / PIECE_BYTES)));
  return Array.from({ length: n }, (_, i) => chunkRange(count, n, i));
}

export interface TopologyDecision {
  readonly topology: AllReduceTopology;
  /** World ranks of each host (by node rank), each by local rank; [] when the topology is not uniform. */
  readonly hosts: readonly (readonly number[])[];
  /** "2 hosts × 2 workers", "1 host with 4 workers", "2 hosts with 3, 1 workers". */
  readonly shape: string;
  /** One line for the log: what runs and why. */
  readonly describe: string;
}

/**
 * The hosts of a world from every rank's place (indexed by world rank): uniform when every node
 * rank 0..H-1 has the same number of workers, with local ranks 0..L-1 each once, and every rank's
 * LOCAL_WORLD_SIZE says L. Undefined hosts when not (the shape still says what was seen).
 */
export function hostLayout(places: readonly Place[]): { hosts: number[][] | undefined; shape: string } {
  const byNode = new Map<number, { rank: number; place: Place }[]>();
  places.forEach((place, rank) => {
    const list = byNode.get(place.nodeRank) ?? [];
    list.push({ rank, place });
    byNode.set(place.nodeRank, list);
  });
  const nodes = [...byNode.keys()].sort((a, b) => a - b);
  const counts = nodes.map((n) => byNode.get(n)!.length);
  const shape =
    nodes.length === 1
      ? `1 host with ${counts[0]} worker${counts[0] === 1 ? '' : 's'}`
      : counts.every((c) => c === counts[0])
        ? `${nodes.length} hosts × ${counts[0]} worker${counts[0] === 1 ? '' : 's'}`
        : `${nodes.length} hosts with ${counts.join(', ')} workers`;
  const L = counts[0];
  const uniform =
    nodes.every((n, i) => n === i) &&
    counts.every((c) => c === L) &&
    nodes.every((n) => {
      const locals = byNode.get(n)!.map((e) => e.place.localRank);
      return byNode.get(n)!.every((e) => e.place.localWorldSize === L) && new Set(locals).size === L && locals.every((l) => l >= 0 && l < L);
    });
  if (!uniform) return { hosts: undefined, shape };
  const hosts = nodes.map((n) => {
    const host = new Array<number>(L);
    for (const e of byNode.get(n)!) host[e.place.localRank] = e.rank;
    return host;
  });
  return { hosts, shape };
}

/**
 * The all-reduce topology of a world whose ranks are at `places`: 'hierarchical' when asked, or
 * on 'auto' when it spans several hosts with the same number (> 1) of workers each; 'flat'
 * otherwise. A ConfigError (one line, the same on every rank) when hierarchical is asked for a
 * world that has not that shape. `why`: the reason the log line gives (default: the choice).
 */
export function chooseTopology(places: readonly Place[], asked: TopologyChoice, why?: string): TopologyDecision {
  const { hosts, shape } = hostLayout(places);
  const fits = hosts !== undefined && hosts.length > 1 && hosts[0].length > 1;
  if (asked === 'hierarchical' && !fits) {
    throw new ConfigError(
      `--allreduce-topology hierarchical needs several hosts with the same number (more than 1) of workers each; this run has ${shape}`,
      'pass --allreduce-topology auto (hierarchical where the topology allows it) or flat',
    );
  }
  const topology: AllReduceTopology = asked === 'flat' || !fits ? 'flat' : 'hierarchical';
  why ??= asked === 'auto' ? 'auto' : `--allreduce-topology ${asked}`;
  const describe =
    topology === 'hierarchical'
      ? `all-reduce: hierarchical (${shape}; ${why}): reduce-scatter within each host, all-reduce across hosts, all-gather within each host`
      : `all-reduce: flat ring (${shape}; ${why})`;
  return { topology, hosts: hosts ?? [], shape, describe };
}

export interface TopologyGroup {
  /** The group the trainer uses: the world itself (flat) or a HierarchicalGroup over it. */
  readonly pg: ProcessGroup;
  readonly decision: TopologyDecision;
}

/**
 * The process group for `asked` over `world` (a collective of the world: every rank calls it with
 * the same `asked`): every rank's place is gathered (so that all ranks decide alike, whatever
 * their own environment says), then, for hierarchical, the host groups and the cross groups are
 * created, in that order. A world of one is flat.
 */
export async function createTopologyGroup(
  world: ProcessGroup,
  place: Place,
  asked: TopologyChoice,
  opts: { smallBytes?: number; minBytes?: number; why?: string } = {},
): Promise<TopologyGroup> {
  const places =
    world.worldSize === 1
      ? [place]
      : await allGatherJson(world, { nodeRank: place.nodeRank, localRank: place.localRank, localWorldSize: place.localWorldSize });
  const decision = chooseTopology(places, asked, opts.why);
  if (decision.topology === 'flat') return { pg: world, decision };
  if (world.newGroup === undefined)
    throw new ConfigError('this process group cannot make subgroups for a hierarchical all-reduce', 'pass --allreduce-topology flat');
  const hosts = decision.hosts;
  let host: ProcessGroup | undefined;
  let cross: ProcessGroup | undefined;
  for (const ranks of hosts) host = (await world.newGroup(ranks)) ?? host;
  for (let l = 0; l < hosts[0].length; l++) cross = (await world.newGroup(hosts.map((h) => h[l]))) ?? cross;
  return { pg: new HierarchicalGroup(world, host!, cross!, opts.smallBytes, opts.minBytes), decision };
}

/** The part of `compression` that a shard [lo, hi) of a buffer of `count` elements keeps: its exact tail is the buffer's, cut to the shard. */
function shardCompression(compression: Compression | undefined, count: number, lo: number, hi: number): Compression | undefined {
  if (compression === undefined) return undefined;
  const tail = compression.exactTail ?? 0;
  return { format: compression.format, exactTail: Math.max(0, hi - Math.max(lo, count - tail)) };
}

export class HierarchicalGroup implements ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  private readonly smallBytes: number;
  private readonly minBytes: number;

  /**
   * `host`: this rank's host group (group rank = local rank); `cross`: the group of the ranks with
   * this rank's local rank (group rank = node rank). Both made by createTopologyGroup.
   */
  constructor(
    readonly world: ProcessGroup,
    readonly host: ProcessGroup,
    readonly cross: ProcessGroup,
    smallBytes = DEFAULT_HIERARCHICAL_SMALL_BYTES,
    minBytes = DEFAULT_HIERARCHICAL_MIN_BYTES,
  ) {
    this.rank = world.rank;
    this.worldSize = world.worldSize;
    this.smallBytes = smallBytes;
    this.minBytes = minBytes;
  }

  /**
   * With `window` (a piece of a larger buffer that must get the whole buffer's flat-ring bits:
   * process_group.ts), the world's flat ring: the window is cut as the flat ring cuts the whole.
   */
  async allReduce(buf: FloatArray, op: ReduceOp = 'sum', compression?: Compression, window?: BufferWindow): Promise<void> {
    if (window !== undefined) return this.world.allReduce(buf, op, compression, window);
    if (buf.byteLength <= this.smallBytes) {
      await this.host.allReduce(buf, op);
      await this.cross.allReduce(buf, op, compression);
      return;
    }
    if (buf.byteLength < this.minBytes) return this.world.allReduce(buf, op, compression);
    const ranges = piecesOf(buf.length, buf.BYTES_PER_ELEMENT);
    const pieces = ranges.map((p) => buf.subarray(p.lo, p.hi) as FloatArray);
    // The cross group's all-reduces, chained one after another; crossDone[i] settles with piece i's.
    const crossDone: Promise<void>[] = [];
    let chain = Promise.resolve();
    const startCross = (i: number): void => {
      const { lo, hi } = shardRange(pieces[i].length, this.host.worldSize, this.host.rank);
      const at = ranges[i].lo;
      chain = chain.then(() => this.cross.allReduce(pieces[i].subarray(lo, hi), op, shardCompression(compression, buf.length, at + lo, at + hi)));
      crossDone[i] = chain;
      // Awaited below; until then a failure must not count as unhandled.
      chain.catch(() => {});
    };
    for (let i = 0; i < pieces.length; i++) {
      await this.host.reduceScatter(pieces[i], op);
      startCross(i);
      if (i > 0) {
        await crossDone[i - 1];
        await this.host.allGatherChunks(pieces[i - 1]);
      }
    }
    await crossDone[pieces.length - 1];
    await this.host.allGatherChunks(pieces[pieces.length - 1]);
  }

  /**
   * Every rank has called it once every member of this rank's cross group has passed its host's
   * barrier: each host has a member in every cross group.
   */
  async barrier(): Promise<void> {
    await this.host.barrier();
    await this.cross.barrier();
  }

  broadcast(buf: NumericArray, root: number): Promise<void> {
    return this.world.broadcast(buf, root);
  }

  allGather<T extends NumericArray>(buf: T): Promise<T[]> {
    return this.world.allGather(buf);
  }

  /** The flat ring's (see the top comment): the world's shards, not this group's all-reduce bits. */
  reduceScatter(buf: FloatArray, op: ReduceOp = 'sum', compression?: Compression): Promise<void> {
    return this.world.reduceScatter(buf, op, compression);
  }

  allGatherChunks(buf: NumericArray): Promise<void> {
    return this.world.allGatherChunks(buf);
  }

  newGroup(ranks: readonly number[]): Promise<ProcessGroup | undefined> {
    if (this.world.newGroup === undefined) throw new ConfigError('this process group cannot make subgroups');
    return this.world.newGroup(ranks);
  }

  /** The latest collectives of the world, the host group and the cross group, each marked with its group. */
  recentCollectives(): readonly CollectiveRecord[] {
    const mark = (g: ProcessGroup, name: string) => (g.recentCollectives?.() ?? []).map((r) => ({ ...r, op: `${name}: ${r.op}` }));
    return [...(this.world.recentCollectives?.() ?? []), ...mark(this.host, 'host group'), ...mark(this.cross, 'cross-host group')];
  }

  /** Subgroups first (their last messages flushed), then the world. */
  async close(): Promise<void> {
    await this.host.close();
    await this.cross.close();
    await this.world.close();
  }
}
