/**
 * The ring's transport seam: a rank sends to its right neighbour and receives from its left one,
 * messages arriving in the order they were sent. One real implementation (ZeroMQ PUSH/PULL,
 * zmq_group.ts) and one in memory (below) that runs N ranks of a ring in one process for tests.
 */
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
   * by the implementation). At most one pending call. The payload belongs to the caller.
   */
  receive(): Promise<Message>;
}

/** An unbounded FIFO with at most one waiting reader. */
class Mailbox {
  private readonly queue: Message[] = [];
  private waiting: ((m: Message) => void) | undefined;

  put(m: Message): void {
    const w = this.waiting;
    if (w !== undefined) {
      this.waiting = undefined;
      w(m);
    } else {
      this.queue.push(m);
    }
  }

  take(): Promise<Message> {
    if (this.waiting !== undefined) return Promise.reject(new Error('a receive() is already pending on this transport'));
    const m = this.queue.shift();
    if (m !== undefined) return Promise.resolve(m);
    return new Promise((resolve) => {
      this.waiting = resolve;
    });
  }
}

/**
 * `worldSize` transports of one ring in this process; element r is rank r's. Payloads are handed
 * over by reference, not copied, and read whenever the receiver gets to them — the same hazard
 * as ZeroMQ's zero-copy send, so a ring that changes a buffer too early fails its tests here.
 */
export function createInMemoryRing(worldSize: number): RingTransport[] {
  const boxes = Array.from({ length: worldSize }, () => new Mailbox());
  return boxes.map((own, rank) => {
    const right = boxes[(rank + 1) % worldSize];
    return {
      send: async (header: Header, payload: Uint8Array) => right.put({ header, payload }),
      receive: () => own.take(),
    };
  });
}
