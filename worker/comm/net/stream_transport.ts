/**
 * The ring's transport over plain kernel stream sockets (a Unix socket on one node, TCP across
 * nodes; connections made by stream_links.ts), received without allocating.
 *
 * Why not ZeroMQ for the data: zeromq.js hands every received message over as a fresh external
 * buffer that only V8's garbage collector frees, and reports it as external memory, so receiving
 * ~16–64 MiB forces a collection (a scavenge or a full mark-compact, "external memory pressure"
 * in --trace-gc). Those pauses, and the page faults of ever new buffers, made the same all-reduce
 * vary 2–5× from run to run. Here the kernel reads each payload straight into a buffer from a
 * pool (Node's `onread` with a buffer chosen per read), and the ring hands each one back
 * (`release`) once it has combined or copied it and, if forwarded, once the kernel has taken it
 * (the write's callback): after the first collective of a size, no allocation per message.
 *
 * Wire format, one message after another on the stream:
 *   prefix 40 bytes: the ring header (frames.ts, 32 bytes), u32 payload bytes, u32 0 (LE)
 *   payload
 * A stream cannot skip a malformed message (nothing marks where the next one starts), so a bad
 * prefix fails the transport: the pending and every later receive() reject, naming the neighbour.
 *
 * Why it is not the default (measured on 2 cores shared by ~15 busy processes): every read and
 * write runs on the JavaScript thread, and a Unix socket buffers only ~200 KB, so each 1 MiB
 * segment takes ~5 write/read turns between the two ranks' main threads. In a training run those
 * threads have just computed, so the scheduler wakes them late: the GPT gradient's all-reduce
 * took 410–450 ms inside a step against ZeroMQ's 100–140 ms (whose I/O thread, a separate light
 * thread, is woken promptly), although alone (bench:allreduce) the two were within noise.
 * Reading in a worker thread into shared memory would keep both advantages.
 */
import type { Socket } from 'node:net';
import { CommError } from '../../../shared/errors.js';
import { Mailbox } from '../../../shared/mailbox.js';
import { decodeHeader, encodeHeader, HEADER_BYTES, type Header } from '../frames.js';
import type { Message, RingTransport } from '../transport.js';

const PREFIX_BYTES = HEADER_BYTES + 8;
/** Larger payloads are refused as garbage (the ring's segments are ~1 MiB). */
const MAX_PAYLOAD_BYTES = 1 << 30;

/**
 * Payload memory, reused. A buffer taken for a received message has one reference (the ring's);
 * a send of it adds one until written; it returns to the free list when none is left. Buffers
 * are at least `minBytes` long so that the ring's segments (equal but for each chunk's last) fit
 * any of them. Free memory is capped at `maxFreeBytes`; beyond, buffers are left to the GC.
 */
export class BufferPool {
  private readonly free: ArrayBuffer[] = [];
  private freeBytes = 0;
  /** References of the buffers out of the pool (weak: an unreleased buffer is simply collected). */
  private readonly refs = new WeakMap<ArrayBuffer, number>();
  /** Buffers created so far (for tests and benchmarks). */
  created = 0;

  constructor(
    private readonly minBytes: number,
    private readonly maxFreeBytes: number,
  ) {}

  take(bytes: number): Uint8Array {
    const i = this.free.findIndex((b) => b.byteLength >= bytes);
    let ab: ArrayBuffer;
    if (i >= 0) {
      ab = this.free.splice(i, 1)[0]!;
      this.freeBytes -= ab.byteLength;
    } else {
      ab = new ArrayBuffer(Math.max(bytes, this.minBytes));
      this.created += 1;
    }
    this.refs.set(ab, 1);
    return new Uint8Array(ab, 0, bytes);
  }

  /** One more reference to `view`'s buffer, if it is the pool's. */
  retain(view: Uint8Array): void {
    const n = this.refs.get(view.buffer as ArrayBuffer);
    if (n !== undefined) this.refs.set(view.buffer as ArrayBuffer, n + 1);
  }

  /** One reference fewer; the last one returns the buffer. Not the pool's: ignored. */
  release(view: Uint8Array): void {
    const ab = view.buffer as ArrayBuffer;
    const n = this.refs.get(ab);
    if (n === undefined) return;
    if (n > 1) {
      this.refs.set(ab, n - 1);
      return;
    }
    this.refs.delete(ab);
    if (this.freeBytes + ab.byteLength <= this.maxFreeBytes) {
      this.free.push(ab);
      this.freeBytes += ab.byteLength;
    }
  }
}

/** What the reading socket's `onread` option needs: where to read next, and what was read. */
export interface ReadTarget {
  /** The memory the next read fills (the rest of a prefix or of a payload). */
  next(): Uint8Array;
  /** `nread` bytes were read into the last next(). */
  onRead(nread: number): void;
}

export class StreamTransport implements RingTransport, ReadTarget {
  private readonly box = new Mailbox<Message | CommError>();
  private failure: CommError | undefined;
  private readonly prefix = new Uint8Array(PREFIX_BYTES);
  private readonly prefixView = new DataView(this.prefix.buffer);
  private filled = 0;
  private header: Header | undefined;
  private payload: Uint8Array | undefined;
  private out: Socket | undefined;

  /**
   * `left`, `right`: the neighbours' ranks (for messages). The reading socket is given its
   * `onread` from this object (`next`, `onRead`); the writing one by `attach`.
   */
  constructor(
    readonly pool: BufferPool,
    private readonly left: number,
    private readonly right: number,
  ) {}

  /** The socket to the right neighbour, once connected and authenticated. */
  attach(out: Socket): void {
    this.out = out;
  }

  send(header: Header, payload: Uint8Array): Promise<void> {
    const out = this.out;
    if (out === undefined) return Promise.reject(new CommError(`no data connection to rank ${this.right} yet`));
    // A closed connection drops the message, as a ZeroMQ queue to a gone peer would: the group
    // learns of the close (stream_links' owner reports it) and names the rank that is gone.
    if (out.destroyed) return Promise.resolve();
    const prefix = new Uint8Array(PREFIX_BYTES);
    prefix.set(encodeHeader(header));
    new DataView(prefix.buffer).setUint32(HEADER_BYTES, payload.byteLength, true);
    // One writev for both; ZeroMQ's rule holds here too: the payload is read later, without a copy.
    out.cork();
    out.write(prefix);
    if (payload.byteLength > 0) {
      this.pool.retain(payload);
      out.write(payload, () => this.pool.release(payload));
    }
    out.uncork();
    return Promise.resolve();
  }

  async receive(): Promise<Message> {
    if (this.failure !== undefined) throw this.failure;
    // One turn of the event loop first, so that the sockets are polled between segments even
    // when messages are queued: reading drains the kernel's small socket buffer, which lets the
    // left neighbour write on while this rank combines.
    await new Promise((r) => setImmediate(r));
    const m = await this.box.take();
    if (m instanceof CommError) throw m;
    return m;
  }

  release(payload: Uint8Array): void {
    this.pool.release(payload);
  }

  /** The reading connection failed or sent garbage: every receive() rejects with `error`. */
  fail(error: CommError): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    this.box.put(error);
  }

  next(): Uint8Array {
    return this.payload !== undefined ? this.payload.subarray(this.filled) : this.prefix.subarray(this.filled);
  }

  onRead(nread: number): void {
    this.filled += nread;
    if (this.payload === undefined) {
      if (this.filled < PREFIX_BYTES) return;
      this.filled = 0;
      const header = decodeHeader(this.prefix.subarray(0, HEADER_BYTES));
      const bytes = this.prefixView.getUint32(HEADER_BYTES, true);
      if (header === undefined || this.prefixView.getUint32(HEADER_BYTES + 4, true) !== 0 || bytes > MAX_PAYLOAD_BYTES) {
        this.fail(
          new CommError(`data connection from rank ${this.left}: received a malformed message header`, 'ranks of one run must run the same rosedist version'),
        );
        // Read on into the prefix (discarded): the owner closes the connection.
        return;
      }
      if (bytes === 0) {
        this.box.put({ header, payload: new Uint8Array(0) });
        return;
      }
      this.header = header;
      this.payload = this.pool.take(bytes);
    } else if (this.filled === this.payload.byteLength) {
      this.box.put({ header: this.header!, payload: this.payload });
      this.payload = undefined;
      this.header = undefined;
      this.filled = 0;
    }
  }
}
