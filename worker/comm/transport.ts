/**
 * The ring's transport seam: a rank sends to its right neighbour and receives from its left one,
 * messages arriving in the order they were sent. Two real implementations (ZeroMQ PUSH/PULL,
 * zmq/zmq_transport.ts, the default; kernel stream sockets, net/stream_transport.ts) and one in
 * memory (below) that runs N ranks of a ring in one process for tests.
 */
import { Mailbox } from '../../shared/mailbox.js';
import type { Header } from './frames.js';

export interface Message {
  readonly header: Header;
  readonly payload: Uint8Array;
}

export interface RingTransport {
  /**
   * Queue a message for the right neighbour. Resolves once queued, not once delivered: the
   * payload is read later without a copy, so its bytes must not change until the ring proves that
   * the right neighbour has received it. May be called while a receive() is pending, but not
   * while another send() is.
   */
  send(header: Header, payload: Uint8Array): Promise<void>;
  /**
   * The next well-formed message from the left neighbour (malformed ones are dropped and logged
   * by the implementation). At most one pending call. The payload belongs to the caller until it
   * calls release().
   */
  receive(): Promise<Message>;
  /**
   * The caller is done with a received payload or allocated memory (it may still be queued in a
   * send(), which keeps it until written): its memory may serve a later message, or be freed, so
   * no view of it may be used afterwards. Optional to call (an unreleased
   * payload is left to the garbage collector) and to implement.
   */
  release?(payload: Uint8Array): void;
  /**
   * Memory of `bytes` for a message this rank computes and sends (a combined segment it
   * forwards), owned by the transport: after send(), hand it back with release() and never touch
   * it again. Lets a transport reuse such memory once the message is out (ZeroMQ: see
   * collectiveEnded) instead of leaving garbage. Optional: without it the ring combines into the
   * received message and forwards that.
   */
  allocate?(bytes: number): Uint8Array;
  /**
   * The group's word that a collective has ended (one runs at a time). `everyRankJoined`: its
   * result needed every rank to have started it (all-reduce, reduce-scatter, the all-gathers,
   * barrier; not a broadcast), so every rank had finished the collective before and had received
   * every message sent to it there: every message this rank sent before this collective began
   * has reached the right neighbour. A transport that cannot see when a queued message has been
   * written (ZeroMQ) frees forwarded payloads then. Optional to implement.
   */
  collectiveEnded?(everyRankJoined: boolean): void;
}

export interface InMemoryRingOptions {
  /**
   * Messages reach the receiver after a pseudo-random delay of up to this many milliseconds
   * (0: on the next turn of the event loop), in order.
   */
  readonly maxDelayMs?: number;
  readonly seed?: number;
  /**
   * Give the ranks allocate() and reuse what they release as the ZeroMQ transport does: a sent
   * buffer only after a later collective every rank joined (collectiveEnded). A reused buffer is
   * first filled with 0xff bytes (NaN), so that reuse before delivery shows in the results.
   */
  readonly recycle?: boolean;
}

/**
 * `worldSize` transports of one ring in this process; element r is rank r's. Like ZeroMQ's I/O
 * thread, a link reads a payload's bytes only when it delivers the message, some time after
 * send() resolved, and the receiver gets its own copy. A ring that changes a buffer before its
 * right neighbour has it therefore delivers wrong data here too.
 */
export function createInMemoryRing(worldSize: number, opts: InMemoryRingOptions = {}): RingTransport[] {
  const boxes = Array.from({ length: worldSize }, () => new Mailbox<Message>());
  let x = (opts.seed ?? 1) >>> 0 || 1;
  const nextDelay = (): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return ((x >>> 0) / 2 ** 32) * (opts.maxDelayMs ?? 0);
  };
  return boxes.map((own, rank) => {
    const right = boxes[(rank + 1) % worldSize];
    const outbox: Message[] = [];
    let pumping = false;
    const pump = (): void => {
      const m = outbox.shift()!;
      right.put({ header: m.header, payload: m.payload.slice() });
      if (outbox.length > 0) schedule();
      else pumping = false;
    };
    const schedule = (): void => {
      const delay = nextDelay();
      if (delay === 0) setImmediate(pump);
      else setTimeout(pump, delay);
    };
    const transport: RingTransport = {
      send: async (header: Header, payload: Uint8Array) => {
        outbox.push({ header, payload });
        if (!pumping) {
          pumping = true;
          schedule();
        }
      },
      receive: () => own.take(),
    };
    return opts.recycle ? recycling(transport) : transport;
  });
}

/** `inner` with allocate/release/collectiveEnded that reuse allocated memory as late as allowed. */
function recycling(inner: RingTransport): RingTransport {
  const mine = new WeakSet<ArrayBuffer>();
  const free: ArrayBuffer[] = [];
  let sentNow = new Map<ArrayBuffer, boolean>();
  let sentBefore = new Map<ArrayBuffer, boolean>();
  const reuse = (ab: ArrayBuffer): void => {
    new Uint8Array(ab).fill(0xff);
    free.push(ab);
  };
  return {
    receive: () => inner.receive(),
    send: (header, payload) => {
      const ab = payload.buffer as ArrayBuffer;
      if (mine.has(ab) && !sentBefore.has(ab)) sentNow.set(ab, false);
      return inner.send(header, payload);
    },
    allocate: (bytes) => {
      const i = free.findIndex((ab) => ab.byteLength === bytes);
      const ab = i >= 0 ? free.splice(i, 1)[0]! : new ArrayBuffer(bytes);
      mine.add(ab);
      return new Uint8Array(ab);
    },
    release: (payload) => {
      const ab = payload.buffer as ArrayBuffer;
      if (!mine.has(ab)) return;
      if (sentNow.has(ab)) sentNow.set(ab, true);
      else if (sentBefore.has(ab)) sentBefore.set(ab, true);
      else reuse(ab);
    },
    collectiveEnded: (everyRankJoined) => {
      if (everyRankJoined) {
        for (const [ab, released] of sentBefore) if (released) reuse(ab);
        sentBefore = sentNow;
      } else {
        for (const entry of sentNow) sentBefore.set(...entry);
      }
      sentNow = new Map();
    },
  };
}
