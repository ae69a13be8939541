/**
 * An unbounded FIFO with one reader: messages put in by callbacks (a socket's data, a peer's
 * delivery) and taken out by one awaiting consumer. Used by the ring transports in memory
 * (worker/comm/transport.ts) and over stream sockets (worker/comm/net/stream_transport.ts), the
 * agent's coordinator client (launcher/coordinator_client.ts) and the handshake's line reader
 * (launcher/control_channel.ts).
 *
 * Concurrency: put() never blocks and may be called at any time; at most one take() may be
 * pending (a second one rejects: two readers of one stream would race for its messages).
 */
interface Waiter<T> {
  deliver(item: T): void;
  /** Set for a take(timeoutMs): ends it with undefined. */
  interrupt?(): void;
}

export class Mailbox<T> {
  private readonly queue: T[] = [];
  private waiter: Waiter<T> | undefined;

  /** Items queued, not yet taken. */
  get length(): number {
    return this.queue.length;
  }

  /** A take() is pending: the next put() goes straight to it. */
  get waiting(): boolean {
    return this.waiter !== undefined;
  }

  /** Hand `item` to the pending take(), or queue it. */
  put(item: T): void {
    const w = this.waiter;
    if (w === undefined) {
      this.queue.push(item);
      return;
    }
    this.waiter = undefined;
    w.deliver(item);
  }

  /** The oldest item, waiting for one if none is queued. */
  take(): Promise<T>;
  /** The same, or undefined if none came within `timeoutMs` or interrupt() was called first. */
  take(timeoutMs: number): Promise<T | undefined>;
  take(timeoutMs?: number): Promise<T | undefined> {
    if (this.waiter !== undefined) return Promise.reject(new Error('a take() is already pending on this mailbox: one reader at a time'));
    if (this.queue.length > 0) return Promise.resolve(this.queue.shift() as T);
    return new Promise((resolve) => {
      if (timeoutMs === undefined) {
        this.waiter = { deliver: resolve };
        return;
      }
      const finish = (item: T | undefined): void => {
        clearTimeout(timer);
        this.waiter = undefined;
        resolve(item);
      };
      const timer = setTimeout(() => finish(undefined), timeoutMs);
      this.waiter = { deliver: finish, interrupt: () => finish(undefined) };
    });
  }

  /** End a pending take(timeoutMs) now, with undefined (its source is gone). An untimed take() keeps waiting. */
  interrupt(): void {
    this.waiter?.interrupt?.();
  }

  /** Remove and return every queued item, oldest first. */
  drain(): T[] {
    return this.queue.splice(0);
  }
}
