/**
 * The ring's transport over ZeroMQ: a PUSH connected to the right neighbour's PULL, and this
 * rank's own PULL, bound, which only the left neighbour connects to. Both queues are unbounded
 * (high-water mark 0) so that queuing a step's segments never blocks; memory stays bounded by
 * the collective's own buffers, which ZeroMQ references without copying.
 *
 * A message that is not [32-byte header, payload] with a valid header is dropped and logged
 * (the first 10, then every 100th): with a run secret only the run's ranks can connect, without
 * one a stranger's garbage must not crash or derail the ring.
 */
import { decodeHeader, encodeHeader, type Header } from '../frames.js';
import type { Message, RingTransport } from '../transport.js';
import type { Pull, Push } from './zmq.js';

export class ZmqTransport implements RingTransport {
  private dropped = 0;

  constructor(
    private readonly push: Push,
    private readonly pull: Pull,
    private readonly warn: (message: string) => void,
  ) {}

  send(header: Header, payload: Uint8Array): Promise<void> {
    return this.push.send([encodeHeader(header), payload]);
  }

  async receive(): Promise<Message> {
    for (;;) {
      const frames = await this.pull.receive();
      const header = frames.length === 2 ? decodeHeader(frames[0]) : undefined;
      if (header !== undefined) return { header, payload: frames[1] };
      this.dropped += 1;
      if (this.dropped <= 10 || this.dropped % 100 === 0) {
        this.warn(`data socket: dropped a malformed message of ${frames.length} frame(s) (${this.dropped} so far)`);
      }
    }
  }
}
