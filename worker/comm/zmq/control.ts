/**
 * The control channel: small JSON messages between ranks, apart from the ring's data path.
 * Every rank binds one ROUTER (rank 0's is the rendezvous address, MASTER_ADDR:MASTER_PORT);
 * a rank asks another one a question with `request` (a DEALER connected for that one exchange).
 *
 * Messages:
 *   hello   rank → 0     join the group (rendezvous.ts)        → ack | reject, later welcome | fail
 *   probe   any → any    "where are you?" after a timeout       → status (RankStatus)
 *   abort   any → any    "the group failed, with this message"  → ack
 * A frame that is not one JSON object with a known `t` is dropped and logged, never fatal.
 */
import { clientOptions, Dealer, Router, serverOptions, watchSocket, type Auth } from './zmq.js';

export type ControlMessage = { readonly t: string } & Readonly<Record<string, unknown>>;
export type Warn = (message: string) => void;

/** Parse one control frame; undefined when it is not a JSON object with a string `t`. */
export function parseControl(frame: Uint8Array): ControlMessage | undefined {
  if (frame.byteLength > 1 << 20) return undefined;
  try {
    const v: unknown = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(frame));
    if (typeof v === 'object' && v !== null && !Array.isArray(v) && typeof (v as { t?: unknown }).t === 'string') {
      return v as ControlMessage;
    }
  } catch {
    // Not UTF-8 or not JSON: malformed.
  }
  return undefined;
}

function encode(msg: ControlMessage): Buffer {
  return Buffer.from(JSON.stringify(msg));
}

/** A message that arrived at a ControlServer, with a way to answer its sender. */
export interface Incoming {
  readonly msg: ControlMessage;
  reply(msg: ControlMessage): Promise<void>;
}

/**
 * A bound ROUTER that hands every well-formed message to `handler` (replaceable: rank 0 first
 * serves the rendezvous, then probes and aborts). Runs until close().
 */
export class ControlServer {
  readonly router: Router;
  handler: (m: Incoming) => void = () => {};
  private readonly warn: Warn;
  private dropped = 0;
  /** Sends one at a time (zeromq.js allows one pending send per socket). */
  private sending: Promise<void> = Promise.resolve();

  constructor(auth: Auth | undefined, warn: Warn) {
    this.router = new Router({ ...serverOptions(auth), linger: 1000, sendHighWaterMark: 0 });
    this.warn = warn;
    watchSocket(this.router, 'control socket', warn);
  }

  /** Start serving (after binding). */
  start(): void {
    void this.loop();
  }

  private async loop(): Promise<void> {
    try {
      for await (const [id, ...frames] of this.router) {
        const msg = frames.length === 1 ? parseControl(frames[0]) : undefined;
        if (msg === undefined) {
          this.drop(`${frames.length} frame(s) that are not one control message`);
          continue;
        }
        this.handler({ msg, reply: (answer) => this.send(id, answer) });
      }
    } catch {
      // Closed.
    }
  }

  private send(id: Buffer, msg: ControlMessage): Promise<void> {
    this.sending = this.sending.then(() => this.router.send([id, encode(msg)])).catch(() => {});
    return this.sending;
  }

  /** Log a dropped message (the first 10, then every 100th, so a flood cannot flood the log). */
  drop(what: string): void {
    this.dropped += 1;
    if (this.dropped <= 10 || this.dropped % 100 === 0) {
      this.warn(`control socket: dropped ${what} (${this.dropped} so far)`);
    }
  }

  /** Close after the answers already queued have been handed to ZeroMQ (linger 1 s sends them). */
  async close(): Promise<void> {
    await this.sending;
    this.router.close();
  }
}

/**
 * Send `msg` to the control socket at `endpoint` and resolve with the first answer, or undefined
 * when none came within `timeoutMs` (peer gone, stopped or unreachable).
 */
export async function request(endpoint: string, msg: ControlMessage, auth: Auth | undefined, timeoutMs: number): Promise<ControlMessage | undefined> {
  const dealer = new Dealer({ ...clientOptions(auth), linger: 0, receiveTimeout: timeoutMs, sendTimeout: timeoutMs });
  try {
    dealer.connect(endpoint);
    await dealer.send(encode(msg));
    const frames = await dealer.receive();
    return frames.length === 1 ? parseControl(frames[0]) : undefined;
  } catch {
    return undefined;
  } finally {
    dealer.close();
  }
}
