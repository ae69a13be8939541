/**
 * The ring's transport over ZeroMQ: a PUSH connected to the right neighbour's PULL, and this
 * rank's own PULL, bound, which only the left neighbour connects to. Both queues are unbounded
 * (high-water mark 0) so that queuing a step's segments never blocks; memory stays bounded by
 * the collective's own buffers, which ZeroMQ references without copying.
 *
 * Memory (comm/detach.ts says why it matters: zeromq.js hands each received message over as an
 * external buffer that only a V8 collection frees, and receiving 16–64 MiB used to force one):
 *   - a received payload only combined or copied is freed at `release`;
 *   - a payload that was sent may still be queued in ZeroMQ, which reads it later without a copy
 *     and says nothing when done. Such a payload (received and forwarded, or `allocate`d for a
 *     combined segment) is freed, or its memory kept for the next `allocate`, once the group
 *     reports a later collective that every rank joined (`collectiveEnded`): then the right
 *     neighbour has received it. Until then it is held (at most HELD_BYTES; beyond, the oldest
 *     are left to the collector).
 * Received buffers count twice against V8's external-memory limit (zeromq.js reports them, and so
 * does V8's own ArrayBuffer accounting) and allocated ones once, which is why the ring combines
 * into allocated memory instead of forwarding the received message: a 64 MiB all-reduce holds
 * 32 MiB of sent segments until the next collective, which as received buffers alone reached the
 * limit (a mark-compact per all-reduce).
 *
 * A message that is not [32-byte header, payload] with a valid header is dropped and logged
 * (the first 10, then every 100th): with a run secret only the run's ranks can connect, without
 * one a stranger's garbage must not crash or derail the ring.
 */
import { detach } from '../detach.js';
import { decodeHeader, encodeHeader, type Header } from '../frames.js';
import type { Message, RingTransport } from '../transport.js';
import type { Pull, Push } from './zmq.js';

/**
 * Sent payloads held until proven received, at most (bytes): two collectives of a 128 MiB
 * all-reduce of 2 ranks. A run of collectives that prove nothing (broadcasts) holds no more.
 */
const HELD_BYTES = 128 << 20;
/** Allocated memory kept for reuse, at most (bytes): the sent segments of two 64 MiB all-reduces of 2 ranks. */
const SPARE_BYTES = 64 << 20;
/**
 * A receive lets the event loop turn once this much was freed since the last turn: a 64 MiB
 * all-reduce's queued messages arrive without one, and their finalizers (Node runs a buffer's
 * finalizer as an immediate), deferred, would add up to V8's limit.
 */
const SETTLE_BYTES = 8 << 20;
/**
 * Received payloads below this are left to the collector: freeing one costs a turn of the event
 * loop for its finalizer (a wake-up of the loop, which small all-reduces feel), and they add
 * little external memory.
 */
const FREE_MIN_BYTES = 64 << 10;

export class ZmqTransport implements RingTransport {
  private dropped = 0;
  /** Memory of the payloads this transport received (each message its own buffer). */
  private readonly received = new WeakSet<ArrayBuffer>();
  /** Memory it handed out with allocate(). */
  private readonly owned = new WeakSet<ArrayBuffer>();
  /** Allocated memory free for reuse. */
  private readonly spare: ArrayBuffer[] = [];
  private spareBytes = 0;
  /** Payloads of either kind sent in the current collective → released yet. */
  private sentNow = new Map<ArrayBuffer, boolean>();
  /** The same from earlier collectives, not yet proven received by the right neighbour. */
  private sentBefore = new Map<ArrayBuffer, boolean>();
  private heldBytes = 0;
  /** Bytes detached since receive() last let the event loop turn. */
  private unsettledBytes = 0;
  /** What became of payloads (tests, benchmarks): freed at release, freed or reused after proof, allocated anew. */
  readonly stats = { freedAtRelease: 0, freedAfterProof: 0, reused: 0, allocated: 0 };

  constructor(
    private readonly push: Push,
    private readonly pull: Pull,
    private readonly warn: (message: string) => void,
  ) {}

  send(header: Header, payload: Uint8Array): Promise<void> {
    const ab = payload.buffer as ArrayBuffer;
    if ((this.received.has(ab) || this.owned.has(ab)) && !this.sentNow.has(ab) && !this.sentBefore.has(ab)) {
      this.sentNow.set(ab, false);
      this.heldBytes += ab.byteLength;
      this.bound();
    }
    return this.push.send([encodeHeader(header), payload]);
  }

  async receive(): Promise<Message> {
    if (this.unsettledBytes >= SETTLE_BYTES) {
      this.unsettledBytes = 0;
      await new Promise((resolve) => setImmediate(resolve));
    }
    for (;;) {
      const frames = await this.pull.receive();
      const header = frames.length === 2 ? decodeHeader(frames[0]) : undefined;
      if (header !== undefined) {
        const payload = frames[1];
        const whole = payload.byteOffset === 0 && payload.byteLength === payload.buffer.byteLength;
        if (whole && payload.byteLength >= FREE_MIN_BYTES) this.received.add(payload.buffer as ArrayBuffer);
        return { header, payload };
      }
      this.dropped += 1;
      if (this.dropped <= 10 || this.dropped % 100 === 0) {
        this.warn(`data socket: dropped a malformed message of ${frames.length} frame(s) (${this.dropped} so far)`);
      }
    }
  }

  allocate(bytes: number): Uint8Array {
    const i = this.spare.findIndex((ab) => ab.byteLength === bytes);
    if (i >= 0) {
      const ab = this.spare.splice(i, 1)[0]!;
      this.spareBytes -= ab.byteLength;
      this.stats.reused += 1;
      return new Uint8Array(ab);
    }
    const ab = new ArrayBuffer(bytes);
    this.owned.add(ab);
    this.stats.allocated += 1;
    return new Uint8Array(ab);
  }

  release(payload: Uint8Array): void {
    const ab = payload.buffer as ArrayBuffer;
    if (!this.received.has(ab) && !this.owned.has(ab)) return;
    if (this.sentNow.has(ab)) this.sentNow.set(ab, true);
    else if (this.sentBefore.has(ab)) this.sentBefore.set(ab, true);
    else this.recycle(ab, 'freedAtRelease');
  }

  collectiveEnded(everyRankJoined: boolean): void {
    if (everyRankJoined) {
      for (const [ab, released] of this.sentBefore) {
        this.heldBytes -= ab.byteLength;
        if (released) this.recycle(ab, 'freedAfterProof');
      }
      this.sentBefore = this.sentNow;
    } else {
      for (const entry of this.sentNow) this.sentBefore.set(...entry);
    }
    this.sentNow = new Map();
  }

  /** `ab` is no longer used by anyone: keep it for allocate() if it is ours and there is room, else free it now. */
  private recycle(ab: ArrayBuffer, freed: 'freedAtRelease' | 'freedAfterProof'): void {
    const bytes = ab.byteLength;
    if (this.owned.has(ab) && this.spareBytes + bytes <= SPARE_BYTES) {
      this.spare.push(ab);
      this.spareBytes += bytes;
      return;
    }
    if (!detach(ab)) return;
    this.stats[freed] += 1;
    this.unsettledBytes += bytes;
  }

  /**
   * Stop holding the oldest sent payloads beyond HELD_BYTES: forgotten as this transport's
   * (release() then ignores them, as ZeroMQ may still read them), the collector frees them.
   */
  private bound(): void {
    for (const held of [this.sentBefore, this.sentNow]) {
      for (const ab of held.keys()) {
        if (this.heldBytes <= HELD_BYTES) return;
        held.delete(ab);
        this.received.delete(ab);
        this.owned.delete(ab);
        this.heldBytes -= ab.byteLength;
      }
    }
  }
}
