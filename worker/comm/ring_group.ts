/**
 * RingGroup: a ProcessGroup made of the ring collectives (ring.ts) over an injected transport,
 * plus what makes a group safe to use — sequence numbers, one collective at a time, a timeout,
 * and failure that reaches every rank:
 *   - a local failure (a mismatch seen in a header, a timeout) breaks the group and is sent to
 *     every peer (`PeerControl.abort`); a peer's abort breaks this rank's group with its message;
 *   - once broken, every collective rejects at once with the first error (the ring's message
 *     streams are out of step; the launcher restarts the group);
 *   - on timeout the rank first asks every peer where it is (`PeerControl.probe`), so that the
 *     error names the ranks that did not take part and why (no answer, not called yet, failed).
 * The transport and the peer control are injected: ZeroMQ in zmq/zmq_group.ts, memory in the tests.
 */
import type { CollectiveRecord } from '../../shared/error_file.js';
import { CommError } from '../../shared/errors.js';
import { setLongTimeout } from '../../shared/timers.js';
import { describe, dtypeOf, HEADER_BYTES, type CollectiveKind, type Signature } from './frames.js';
import { checkGroupRanks, type FloatArray, type NumericArray, type ProcessGroup, type ReduceOp } from './process_group.js';
import { createReducer } from './reduce.js';
import { ringAllGatherChunks, ringAllReduce, ringReduceScatter, type RingContext } from './ring.js';
import { gatherAllReduce, gatherReduceScatter, ringAllGather, ringBroadcast } from './ring_whole.js';
import { describeStall, type RankStatus } from './stall.js';
import { compressedGather, compressedRing } from './ring_compressed.js';
import { codecFor, type Compression } from './wire.js';
import { shardRange, windowChunkRange, type BufferWindow } from './chunks.js';
import { checkFloat, checkNumeric, checkOp, checkWindow } from './collective_args.js';
import { chooseAllReduce, DEFAULT_COLLECTIVE_TIMEOUT_MS, DEFAULT_GATHER_BYTES, DEFAULT_SEGMENT_BYTES } from './ring_group_options.js';
import type { AllReduceAlgorithm, PeerControl, RingGroupOptions, SubgroupFactory } from './ring_group_options.js';

/** How many of the latest collectives a group remembers (for the failure summary). */
export const COLLECTIVE_HISTORY = 5;

type State = 'idle' | 'running' | 'failed' | 'closed';

export class RingGroup implements ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  private readonly ctx: RingContext;
  private readonly control: PeerControl;
  private readonly timeoutMs: number;
  private readonly gatherBytes: number;
  private readonly forced: AllReduceAlgorithm | 'auto';
  private readonly hostOf: ((rank: number) => string | undefined) | undefined;
  private state: State = 'idle';
  private seq = 0;
  private last: Signature | undefined;
  private failure: CommError | undefined;
  private rejectFailed!: (e: CommError) => void;
  /** Date.now() of the last message received (or of the start of the current collective). */
  private lastProgress = 0;
  /** A lost connection not yet checked (reported while no collective ran). */
  private suspicion: string | undefined;
  private suspecting = false;
  /** The latest collectives, oldest first (at most COLLECTIVE_HISTORY); entries change state in place. */
  private readonly history: { seq: number; op: string; bytes: number; state: CollectiveRecord['state'] }[] = [];
  /** Rejects once the group fails; raced against every collective. */
  private readonly failed: Promise<never>;
  private readonly label: string | undefined;
  private readonly subgroups: SubgroupFactory | undefined;
  private subgroupCount = 0;
  /** Bytes this rank has queued for its right neighbour (payloads and headers), for benchmarks. */
  bytesSent = 0;

  constructor(opts: RingGroupOptions) {
    this.rank = opts.rank;
    this.worldSize = opts.worldSize;
    this.control = opts.control;
    this.timeoutMs = opts.collectiveTimeoutMs ?? DEFAULT_COLLECTIVE_TIMEOUT_MS;
    this.gatherBytes = opts.gatherBytes ?? DEFAULT_GATHER_BYTES;
    this.forced = opts.allReduceAlgorithm ?? 'auto';
    this.label = opts.label;
    this.subgroups = opts.subgroups;
    this.hostOf = opts.hostOf;
    const inner = opts.transport;
    this.ctx = {
      rank: opts.rank,
      worldSize: opts.worldSize,
      transport: {
        send: (header, payload) => {
          this.bytesSent += payload.byteLength + HEADER_BYTES;
          return inner.send(header, payload);
        },
        receive: () =>
          inner.receive().then((m) => {
            this.lastProgress = Date.now();
            return m;
          }),
        release: (payload) => inner.release?.(payload),
        collectiveEnded: (everyRankJoined) => inner.collectiveEnded?.(everyRankJoined),
        allocate: inner.allocate?.bind(inner),
      },
      segmentBytes: opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES,
      reducer: opts.reducer ?? createReducer(),
    };
    this.failed = new Promise<never>((_, reject) => {
      this.rejectFailed = reject;
    });
    this.failed.catch(() => {});
  }

  async allReduce(buf: FloatArray, op: ReduceOp = 'sum', compression?: Compression, window?: BufferWindow): Promise<void> {
    checkFloat('allReduce', buf);
    checkOp('allReduce', op);
    if (window !== undefined) checkWindow(buf, window);
    // A window takes the whole buffer's algorithm and cut (the gather path sums in rank order
    // whatever the cut), so that its elements get the whole all-reduce's bits.
    const algorithm = this.allReduceAlgorithm(window === undefined ? buf.byteLength : window.total * buf.BYTES_PER_ELEMENT);
    const chunks = window === undefined ? undefined : (c: number) => windowChunkRange(window, buf.length, this.worldSize, c);
    if (compression !== undefined) {
      const codec = codecFor('allReduce', buf, compression);
      await this.run('allReduce', buf, { op, wire: codec.format }, (sig) =>
        algorithm === 'ring'
          ? compressedRing(this.ctx, buf as Float32Array, sig, codec, true, chunks)
          : compressedGather(this.ctx, buf as Float32Array, sig, codec),
      );
      return;
    }
    await this.run('allReduce', buf, { op }, (sig) => (algorithm === 'ring' ? ringAllReduce(this.ctx, buf, sig, chunks) : gatherAllReduce(this.ctx, buf, sig)));
  }

  /** The algorithm an all-reduce of `bytes` per rank takes in this group (see AllReduceAlgorithm). */
  allReduceAlgorithm(bytes: number): AllReduceAlgorithm {
    return this.forced === 'auto' ? chooseAllReduce(bytes, this.worldSize, this.gatherBytes) : this.forced;
  }

  async reduceScatter(buf: FloatArray, op: ReduceOp = 'sum', compression?: Compression): Promise<void> {
    checkFloat('reduceScatter', buf);
    checkOp('reduceScatter', op);
    // The all-reduce's algorithm for this size, so that the shard has exactly its bits.
    const algorithm = this.allReduceAlgorithm(buf.byteLength);
    if (compression !== undefined) {
      const codec = codecFor('reduceScatter', buf, compression);
      const mine = shardRange(buf.length, this.worldSize, this.rank);
      await this.run('reduceScatter', buf, { op, wire: codec.format }, (sig) =>
        algorithm === 'ring'
          ? compressedRing(this.ctx, buf as Float32Array, sig, codec, false)
          : compressedGather(this.ctx, buf as Float32Array, sig, codec, mine),
      );
      return;
    }
    await this.run('reduceScatter', buf, { op }, (sig) => (algorithm === 'ring' ? ringReduceScatter : gatherReduceScatter)(this.ctx, buf, sig));
  }

  async allGatherChunks(buf: NumericArray): Promise<void> {
    checkNumeric('allGatherChunks', buf);
    await this.run('allGatherChunks', buf, {}, (sig) => ringAllGatherChunks(this.ctx, buf, sig));
  }

  async broadcast(buf: NumericArray, root: number): Promise<void> {
    if (!Number.isInteger(root) || root < 0 || root >= this.worldSize) {
      throw new CommError(`broadcast root ${root} is not a rank of a world of ${this.worldSize}`, `pass a root in [0, ${this.worldSize})`);
    }
    checkNumeric('broadcast', buf);
    await this.run('broadcast', buf, { root }, (sig) => ringBroadcast(this.ctx, buf, { ...sig, root }));
  }

  async allGather<T extends NumericArray>(buf: T): Promise<T[]> {
    checkNumeric('allGather', buf);
    return this.run('allGather', buf, {}, (sig) => ringAllGather(this.ctx, buf, sig));
  }

  async barrier(): Promise<void> {
    const empty = new Float32Array(0);
    const algorithm = this.allReduceAlgorithm(0);
    await this.run('barrier', empty, {}, (sig) => (algorithm === 'ring' ? ringAllReduce : gatherAllReduce)(this.ctx, empty, sig));
  }

  /**
   * torch's new_group (process_group.ts). A collective of this group; the new group's collectives
   * are independent of this one's (own sequence numbers, own ring), but like every collective they
   * must be awaited one at a time per group.
   */
  async newGroup(ranks: readonly number[]): Promise<ProcessGroup | undefined> {
    try {
      checkGroupRanks(ranks, this.worldSize);
    } catch (e) {
      throw new CommError((e as Error).message, `pass distinct ranks in [0, ${this.worldSize})`);
    }
    if (this.failure !== undefined) throw this.failure;
    if (this.subgroups === undefined)
      throw new CommError(`newGroup is not available on ${this.label ?? 'this group'}`, 'create subgroups from the world group');
    this.subgroupCount += 1;
    return this.subgroups(this, ranks, this.subgroupCount);
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    const flush = this.state === 'idle';
    this.state = 'closed';
    this.failure ??= new CommError(`process group of rank ${this.rank} is closed`, 'create a new one with initProcessGroup');
    this.rejectFailed(this.failure);
    await this.control.close(flush);
  }

  recentCollectives(): readonly CollectiveRecord[] {
    return this.history.map((h) => ({ ...h }));
  }

  /** Where this rank is, for a peer's probe. */
  status(): RankStatus {
    return {
      rank: this.rank,
      seq: this.last?.seq ?? 0,
      collective: this.last === undefined ? 'none' : describe(this.last),
      state: this.state,
      error: this.state === 'failed' ? this.failure?.message : undefined,
    };
  }

  /**
   * A ring connection was lost (`cause`, e.g. "its connection from rank 2 closed"): once no
   * message has arrived for a while, ask the peers where they are and fail the collective in
   * progress if some rank cannot take part any more (dead, closed). Otherwise (a connection that
   * came back, everyone still in it) nothing happens. Reported between collectives, the check
   * runs when the next one starts.
   */
  async suspect(cause: string): Promise<void> {
    if (this.state === 'idle') this.suspicion = cause;
    if (this.state !== 'running' || this.suspecting) return;
    this.suspecting = true;
    this.suspicion = undefined;
    const sig = this.last!;
    const current = (): boolean => this.state === 'running' && this.last === sig;
    try {
      // Messages a neighbour sent before closing may still be queued here: let them drain.
      const quietMs = Math.min(1000, this.timeoutMs / 4);
      while (current() && Date.now() - this.lastProgress < quietMs) {
        await new Promise((r) => setTimeout(r, quietMs - (Date.now() - this.lastProgress)));
      }
      if (!current()) return;
      const statuses = await this.control.probe(this.probeWindowMs());
      if (!current()) return;
      const stall = describeStall(sig, this.rank, this.worldSize, `stalled after ${cause}`, statuses, this.hostOf);
      if (stall.missing > 0) this.fail(new CommError(stall.message, stall.hint), true);
    } finally {
      this.suspecting = false;
    }
  }

  /** A peer reports that the group failed: every collective of this rank rejects with `message`. */
  abortedBy(from: number, message: string): void {
    this.fail(new CommError(`${message} (reported by rank ${from})`, "see the first failing rank's log"), false);
  }

  private async run<T>(
    kind: CollectiveKind,
    buf: NumericArray,
    extra: { op?: ReduceOp; root?: number; wire?: Compression['format'] },
    body: (sig: Signature) => Promise<T>,
  ): Promise<T> {
    if (this.failure !== undefined) throw this.failure;
    if (this.state === 'running') {
      throw new CommError(
        `${kind} called while ${describe(this.last!)} is still running on rank ${this.rank}`,
        'await each collective before starting the next',
      );
    }
    this.seq += 1;
    const sig: Signature = { kind, seq: this.seq, dtype: dtypeOf(buf), count: buf.length, ...extra };
    this.last = sig;
    const entry = { seq: sig.seq, op: describe(sig).replace(/^#\d+ /, ''), bytes: buf.byteLength, state: 'running' as CollectiveRecord['state'] };
    this.history.push(entry);
    if (this.history.length > COLLECTIVE_HISTORY) this.history.shift();
    this.state = 'running';
    this.lastProgress = Date.now();
    if (this.suspicion !== undefined) void this.suspect(this.suspicion);
    // Any length: a huge --collective-timeout means "never", not a 32-bit overflow that fires at once.
    const timer = setLongTimeout(() => void this.onTimeout(sig), this.timeoutMs);
    try {
      const result = await Promise.race([body(sig), this.failed]);
      entry.state = 'done';
      // Every rank's contribution reached this one, except in a broadcast (only the root's).
      this.ctx.transport.collectiveEnded?.(kind !== 'broadcast');
      return result;
    } catch (e) {
      entry.state = 'failed';
      throw this.fail(e instanceof CommError ? e : new CommError(`${describe(sig)} failed on rank ${this.rank}: ${String(e)}`), true);
    } finally {
      timer.clear();
      if (this.state === 'running') this.state = 'idle';
    }
  }

  private async onTimeout(sig: Signature): Promise<void> {
    if (this.state !== 'running' || this.last !== sig) return;
    const statuses = await this.control.probe(this.probeWindowMs());
    if (this.state !== 'running' || this.last !== sig) return; // finished while we asked
    const { message, hint } = describeStall(sig, this.rank, this.worldSize, `timed out after ${this.timeoutMs / 1000} s`, statuses, this.hostOf);
    this.fail(new CommError(message, hint), true);
  }

  /** How long a probe waits for answers: long enough for a busy peer, short against the timeout. */
  private probeWindowMs(): number {
    return Math.max(500, Math.min(5000, this.timeoutMs / 4));
  }

  /** Break the group with `error` (the first error wins) and, if it is ours, tell the peers. */
  private fail(error: CommError, tellPeers: boolean): CommError {
    if (this.failure !== undefined) return this.failure;
    if (this.label !== undefined && !error.message.startsWith(this.label)) error = new CommError(`${this.label}: ${error.message}`, error.hint);
    this.failure = error;
    if (this.state !== 'closed') this.state = 'failed';
    this.rejectFailed(error);
    if (tellPeers) void this.control.abort(error.message).catch(() => {});
    return error;
  }
}
