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
   * The caller is done with a received payload (it may still be queued in a send(), which keeps
   * it until written): its memory may serve a later message. Optional to call (an unreleased
   * payload is left to the garbage collector) and to implement.
   */
  release?(payload: Uint8Array): void;
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
    return {
      send: async (header: Header, payload: Uint8Array) => {
        outbox.push({ header, payload });
        if (!pumping) {
          pumping = true;
          schedule();
        }
      },
      receive: () => own.take(),
    };
  });
}
