/**
 * The ring's transport over ZeroMQ: a PUSH connected to the right neighbour's PULL, and this
 * rank's own PULL, bound, which only the left neighbour connects to. Both queues are unbounded
 * (high-water mark 0) so that queuing a step's segments never blocks; memory stays bounded by
 * the collective's own buffers, which ZeroMQ references without copying.
 *
 * Received payloads are freed as soon as the ring is done with them (comm/detach.ts says why:
 * otherwise each is an external buffer that only a V8 collection frees, and receiving 16–64 MiB
 * forces one). A payload only combined or copied is freed at `release`. One that was also
 * forwarded may still be queued in ZeroMQ, which reads it later without a copy and says nothing
 * when done: it is freed once the group reports a later collective that every rank joined
 * (`collectiveEnded`), which proves the right neighbour has received it. Until then it is held
 * (at most HELD_BYTES; beyond, the oldest are left to the collector).
 *
 * A message that is not [32-byte header, payload] with a valid header is dropped and logged
 * (the first 10, then every 100th): with a run secret only the run's ranks can connect, without
 * one a stranger's garbage must not crash or derail the ring.
 */
import { detach } from '../detach.js';
import { decodeHeader, encodeHeader, type Header } from '../frames.js';
import type { Message, RingTransport } from '../transport.js';
import type { Pull, Push } from './zmq.js';

/** Forwarded payloads held for freeing, at most (bytes): a few all-reduces of the ring's largest buffers. */
const HELD_BYTES = 256 << 20;
/**
 * A receive lets the event loop turn once this much was freed since the last turn: a 64 MiB
 * all-reduce's queued messages arrive without one, and their finalizers, deferred, would add up
 * to V8's limit (64 MiB of external memory above its low point since the last mark-compact).
 */
const SETTLE_BYTES = 8 << 20;

export class ZmqTransport implements RingTransport {
  private dropped = 0;
  /** Memory of the payloads this transport received (each message its own buffer). */
  private readonly received = new WeakSet<ArrayBuffer>();
  /** Received payloads sent on in the current collective → released yet. */
  private forwardedNow = new Map<ArrayBuffer, boolean>();
  /** The same from earlier collectives, not yet proven received by the right neighbour. */
  private forwardedBefore = new Map<ArrayBuffer, boolean>();
  private heldBytes = 0;
  /** Bytes detached since receive() last let the event loop turn. */
  private unsettledBytes = 0;
  /** Payloads freed at once and after proof (tests, benchmarks). */
  readonly freed = { atRelease: 0, afterProof: 0 };

  constructor(
    private readonly push: Push,
    private readonly pull: Pull,
    private readonly warn: (message: string) => void,
  ) {}

  send(header: Header, payload: Uint8Array): Promise<void> {
    const ab = payload.buffer as ArrayBuffer;
    if (this.received.has(ab) && !this.forwardedNow.has(ab)) {
      this.forwardedNow.set(ab, false);
      this.heldBytes += ab.byteLength;
      this.bound();
    }
    return this.push.send([encodeHeader(header), payload]);
  }

  async receive(): Promise<Message> {
    if (this.unsettledBytes >= SETTLE_BYTES) {
      // Detached payloads are finalized on a later turn of the event loop (Node runs a
      // buffer's finalizer as a thread-safe immediate): let it run, or V8 still sees them.
      this.unsettledBytes = 0;
      await new Promise((resolve) => setImmediate(resolve));
    }
    for (;;) {
      const frames = await this.pull.receive();
      const header = frames.length === 2 ? decodeHeader(frames[0]) : undefined;
      if (header !== undefined) {
        const payload = frames[1];
        if (payload.byteOffset === 0 && payload.byteLength === payload.buffer.byteLength) this.received.add(payload.buffer as ArrayBuffer);
        return { header, payload };
      }
      this.dropped += 1;
      if (this.dropped <= 10 || this.dropped % 100 === 0) {
        this.warn(`data socket: dropped a malformed message of ${frames.length} frame(s) (${this.dropped} so far)`);
      }
    }
  }

  release(payload: Uint8Array): void {
    const ab = payload.buffer as ArrayBuffer;
    if (!this.received.has(ab)) return;
    if (this.forwardedNow.has(ab)) this.forwardedNow.set(ab, true);
    else if (this.forwardedBefore.has(ab)) this.forwardedBefore.set(ab, true);
    else this.free(ab, 'atRelease');
  }

  collectiveEnded(everyRankJoined: boolean): void {
    if (everyRankJoined) {
      for (const [ab, released] of this.forwardedBefore) {
        this.heldBytes -= ab.byteLength;
        if (released) this.free(ab, 'afterProof');
      }
      this.forwardedBefore = this.forwardedNow;
    } else {
      for (const entry of this.forwardedNow) this.forwardedBefore.set(...entry);
    }
    this.forwardedNow = new Map();
  }

  private free(ab: ArrayBuffer, when: keyof ZmqTransport['freed']): void {
    const bytes = ab.byteLength;
    if (!detach(ab)) return;
    this.freed[when] += 1;
    this.unsettledBytes += bytes;
  }

  /** Stop holding the oldest forwarded payloads beyond HELD_BYTES (the collector frees them). */
  private bound(): void {
    for (const held of [this.forwardedBefore, this.forwardedNow]) {
      for (const ab of held.keys()) {
        if (this.heldBytes <= HELD_BYTES) return;
        held.delete(ab);
        this.heldBytes -= ab.byteLength;
      }
    }
  }
}
