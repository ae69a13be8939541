/**
 * Signed JSON lines over one TCP connection between two launchers.
 *
 * Frame: `<HMAC-SHA256 hex> <json>\n`, json = {"seq": n, "body": ...}. Each direction has its own
 * key, derived from the run's secret and the two nonces of the handshake
 * (launcher/rendezvous.ts), and its own sequence counting from 0: a frame from a stranger,
 * a replayed or reordered frame, or one reflected back to its sender fails the check. A frame
 * that fails closes the channel (the peer is either broken or not who it says).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import { Mailbox } from '../shared/mailbox.js';
import { LineSplitter } from './lines.js';

/** Longest line accepted, bytes: control messages are small; this bounds a stranger's memory use. */
export const MAX_LINE = 1 << 20;

export function hmac(key: Buffer | string, text: string): string {
  return createHmac('sha256', key).update(text).digest('hex');
}

/** Constant-time comparison of two hex MACs. */
export function sameMac(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The two keys of a connection: node 0 → node k, and node k → node 0. */
export function channelKeys(secret: string, serverNonce: string, clientNonce: string): { toClient: Buffer; toServer: Buffer } {
  const derive = (label: string) => createHmac('sha256', secret).update(`${label}|${serverNonce}|${clientNonce}`).digest();
  return { toClient: derive('rosedist node0->nodek'), toServer: derive('rosedist nodek->node0') };
}

/**
 * The lines arriving on a socket, read by one consumer at a time: first the handshake (`next`),
 * then a SignedChannel (`onLine`), with nothing lost in between even when both came in one chunk.
 * A line longer than `maxLine` destroys the socket.
 */
export class LineReader {
  private readonly splitter = new LineSplitter((line) => this.deliver(line));
  private readonly lines = new Mailbox<string>();
  private handler: ((line: string) => void) | undefined;
  private ended = false;

  constructor(
    private readonly socket: Socket,
    private readonly maxLine = MAX_LINE,
  ) {
    socket.on('data', (chunk: Buffer) => this.data(chunk));
    socket.on('close', () => {
      this.ended = true;
      this.lines.interrupt();
    });
  }

  /** The next line; undefined when the socket closed or `timeoutMs` passed first. */
  next(timeoutMs: number): Promise<string | undefined> {
    if (this.lines.length === 0 && this.ended) return Promise.resolve(undefined);
    return this.lines.take(timeoutMs);
  }

  /** From now on every line (the queued ones first) goes to `handler`. */
  onLine(handler: (line: string) => void): void {
    this.handler = handler;
    for (const line of this.lines.drain()) {
      if (this.socket.destroyed) break;
      handler(line);
    }
  }

  private data(chunk: Buffer): void {
    // Bytes, not chunk.toString(): a character split across two TCP segments stays whole.
    this.splitter.push(chunk);
    if (this.splitter.pendingLength > this.maxLine) this.socket.destroy();
  }

  private deliver(line: string): void {
    if (this.socket.destroyed) return;
    if (line.length > this.maxLine) this.socket.destroy();
    else if (this.handler !== undefined && !this.lines.waiting) this.handler(line);
    else this.lines.put(line);
  }
}

/** Every launcher-to-launcher channel sends a heartbeat this often (ms) ... */
export const HEARTBEAT_MS = 5_000;
/** ... and is lost when silent this long (ms): a cut link or frozen host, not only a closed one. */
export const HEARTBEAT_TIMEOUT_MS = 15_000;

function isHeartbeat(body: unknown): boolean {
  return typeof body === 'object' && body !== null && (body as { type?: unknown }).type === 'heartbeat';
}

export class SignedChannel {
  private sendSeq = 0;
  private recvSeq = 0;
  private closeReason: string | undefined;
  private closedWhy: string | undefined;
  private handler: ((body: unknown) => void) | undefined;
  /** Bodies verified before anyone listened. */
  private readonly pending: unknown[] = [];
  private closeHandler: (why: string) => void = () => {};
  private rejected = false;
  private lastHeard = Date.now();
  private heartbeat: NodeJS.Timeout | undefined;

  constructor(
    private readonly socket: Socket,
    reader: LineReader,
    private readonly sendKey: Buffer,
    private readonly recvKey: Buffer,
  ) {
    reader.onLine((line) => {
      if (!this.rejected) this.receive(line);
    });
    socket.on('close', () => this.closed(this.closeReason ?? 'connection closed'));
    socket.on('error', (e) => {
      this.closeReason ??= e.message;
    });
  }

  /** Handle each verified message body, starting with those that arrived before (replaces any earlier handler). */
  onMessage(handler: (body: unknown) => void): void {
    this.handler = handler;
    for (const body of this.pending.splice(0)) handler(body);
  }

  /** Called once when the connection ends, with why. */
  onClose(handler: (why: string) => void): void {
    const why = this.closedWhy;
    if (why !== undefined) queueMicrotask(() => handler(why));
    else this.closeHandler = handler;
  }

  /**
   * Send a heartbeat every `intervalMs` and close the channel when nothing (heartbeat or message)
   * arrived for `timeoutMs`: a peer that stopped answering without closing (a frozen or cut-off
   * host) is then lost like one whose connection closed. Both sides must call it.
   */
  keepAlive(intervalMs: number, timeoutMs: number): void {
    this.lastHeard = Date.now();
    this.heartbeat = setInterval(() => {
      const silent = Date.now() - this.lastHeard;
      if (silent > timeoutMs) this.reject(`no heartbeat for ${(silent / 1000).toFixed(1)} s`);
      else this.send({ type: 'heartbeat' });
    }, intervalMs);
    this.heartbeat.unref();
  }

  send(body: unknown): void {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    const json = JSON.stringify({ seq: this.sendSeq, body });
    this.sendSeq += 1;
    this.socket.write(`${hmac(this.sendKey, json)} ${json}\n`);
  }

  /** End the connection after what was sent is flushed; resolves when it is closed (at most `waitMs`). */
  close(waitMs = 2000): Promise<void> {
    if (this.socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.socket.destroy();
        resolve();
      }, waitMs);
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.socket.end();
    });
  }

  private receive(line: string): void {
    const space = line.indexOf(' ');
    const json = space > 0 ? line.slice(space + 1) : '';
    if (space <= 0 || !sameMac(line.slice(0, space), hmac(this.recvKey, json))) return this.reject('a frame failed authentication');
    let frame: { seq?: unknown; body?: unknown };
    try {
      frame = JSON.parse(json) as typeof frame;
    } catch {
      return this.reject('a frame was not JSON');
    }
    if (frame.seq !== this.recvSeq) return this.reject(`frame ${String(frame.seq)} arrived where ${this.recvSeq} was due (replayed?)`);
    this.recvSeq += 1;
    this.lastHeard = Date.now();
    if (isHeartbeat(frame.body)) return;
    if (this.handler !== undefined) this.handler(frame.body);
    else this.pending.push(frame.body);
  }

  private reject(why: string): void {
    this.closeReason ??= why;
    this.rejected = true;
    this.socket.destroy();
  }

  private closed(why: string): void {
    clearInterval(this.heartbeat);
    this.closedWhy = why;
    const handler = this.closeHandler;
    this.closeHandler = () => {};
    handler(why);
  }
}
