/**
 * The one place zeromq enters: the socket classes the process group uses, its security options,
 * the ZAP authentication handler, endpoints and handshake logging.
 *
 * Authentication (the run's secret, env ROSEDIST_SECRET): every bound socket is a PLAIN server
 * whose credentials are checked by a ZAP handler in this process (ZeroMQ RFC 27); every
 * connecting socket sends a token derived from the secret. A peer without it never completes the
 * handshake, so it cannot send a frame, join, or stall the run; each refusal is logged with the
 * peer's address. The token travels unencrypted (PLAIN, not CURVE: CURVE would encrypt every
 * tensor): enough on loopback and a trusted cluster network, not against an eavesdropper.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { Dealer, Pull, Push, Reply, Router, type Socket } from 'zeromq';

export { Dealer, Pull, Push, Router };
export type { Socket };

/** The credentials a group's sockets use; undefined auth: none (a run without a secret). */
export interface Auth {
  /** ZAP domain of this group's bound sockets, unique per group in this process. */
  readonly domain: string;
  /** Token derived from the run's secret. */
  readonly token: string;
}

const PLAIN_USER = 'rosedist';

/** The token for a run's secret: an HMAC, so the secret itself never goes over the wire. */
export function tokenFor(secret: string): string {
  return createHmac('sha256', secret).update('rosedist zmq plain v1').digest('hex');
}

/** Socket options of a bound (server) socket. */
export function serverOptions(auth: Auth | undefined): { plainServer?: boolean; zapDomain?: string } {
  return auth === undefined ? {} : { plainServer: true, zapDomain: auth.domain };
}

/** Socket options of a connecting (client) socket. */
export function clientOptions(auth: Auth | undefined): { plainUsername?: string; plainPassword?: string } {
  return auth === undefined ? {} : { plainUsername: PLAIN_USER, plainPassword: auth.token };
}

type Warn = (message: string) => void;

/**
 * One ZAP handler per process (ZeroMQ asks inproc://zeromq.zap.01 of its context), serving
 * every group's domain. Started by the first registration, closed with the last.
 */
class ZapHandler {
  private readonly domains = new Map<string, { token: Buffer; warn: Warn }>();
  private socket: Reply | undefined;
  private bound: Promise<void> = Promise.resolve();

  async register(auth: Auth, warn: Warn): Promise<() => void> {
    this.domains.set(auth.domain, { token: Buffer.from(auth.token), warn });
    if (this.socket === undefined) {
      const socket = new Reply({ linger: 0 });
      this.socket = socket;
      this.bound = bindZap(socket).then(
        () => void this.serve(socket),
        (e: unknown) => {
          socket.close();
          if (this.socket === socket) this.socket = undefined;
          throw e;
        },
      );
    }
    // Every registration waits for the bind: a group's sockets must not accept peers before it.
    try {
      await this.bound;
    } catch (e) {
      this.domains.delete(auth.domain);
      throw e;
    }
    return () => {
      this.domains.delete(auth.domain);
      if (this.domains.size === 0 && this.socket !== undefined) {
        this.socket.close();
        this.socket = undefined;
      }
    };
  }

  private async serve(socket: Reply): Promise<void> {
    try {
      for await (const frames of socket) {
        await socket.send(this.answer(frames));
      }
    } catch {
      // Closed: nothing more to answer.
    }
  }

  /** RFC 27: request [version, id, domain, address, identity, mechanism, credentials...]. */
  private answer(frames: Buffer[]): Buffer[] | string[] {
    const [version, id, domain, address, , mechanism, user, password] = frames;
    const deny = (why: string): Buffer[] | string[] => {
      this.domains.get(String(domain))?.warn(`refused a connection from ${String(address) || 'a local process'}: ${why}`);
      return ['1.0', String(id ?? ''), '400', why, '', ''];
    };
    if (frames.length < 6 || String(version) !== '1.0') return deny('malformed authentication request');
    const group = this.domains.get(String(domain));
    if (group === undefined) return deny('unknown domain');
    if (String(mechanism) !== 'PLAIN' || user === undefined || password === undefined) return deny(`mechanism ${String(mechanism)} is not PLAIN`);
    const ok = String(user) === PLAIN_USER && password.length === group.token.length && timingSafeEqual(password, group.token);
    if (!ok) return deny("wrong credentials (not started with this run's secret)");
    // User id empty: libzmq queues a non-empty one as a "credential" message ahead of the
    // connection's first message, and a waiting receive is woken for it (ZMQ_EVENTS says POLLIN)
    // while the first message is still incomplete (the ring's [header, payload], a large payload
    // arriving over several reads); zmq_msg_recv skips the credential, finds nothing whole and
    // zeromq.js rejects the receive with EAGAIN ("Operation was not possible or timed out").
    // Nothing here reads the user id: every accepted peer is a rank of this run.
    return [version, id, Buffer.from('200'), Buffer.from('OK'), Buffer.alloc(0), Buffer.alloc(0)];
  }
}

/**
 * Bind the ZAP endpoint. A handler closed a moment ago (the last group of this process closed,
 * and a new one starts) still holds the inproc name until libzmq's reaper thread has released it,
 * so EADDRINUSE is retried for up to ~1 s.
 */
async function bindZap(socket: Reply): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await socket.bind('inproc://zeromq.zap.01');
      return;
    } catch (e) {
      if ((e as { code?: unknown }).code !== 'EADDRINUSE' || attempt >= 100) throw e;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

const zap = new ZapHandler();

/** Check connections to sockets with `serverOptions(auth)`; call the result to stop. */
export function registerAuth(auth: Auth, warn: Warn): Promise<() => void> {
  return zap.register(auth, warn);
}

/**
 * Watch `socket` until it closes: log failed handshakes (a peer speaking another protocol or
 * security mechanism; garbage never reaches the application, ZeroMQ drops the connection during
 * the handshake) and report lost connections to `onDisconnect`. One watcher per socket
 * (zeromq.js allows one reader of a socket's events).
 */
export function watchSocket(socket: Socket, what: string, warn: Warn, onDisconnect?: () => void): void {
  void (async () => {
    try {
      for await (const event of socket.events) {
        if (event.type === 'handshake:error:protocol' || event.type === 'handshake:error:other') {
          warn(`${what}: dropped a connection that failed the ZeroMQ handshake (${event.error.message})`);
        } else if (event.type === 'disconnect') {
          onDisconnect?.();
        }
      }
    } catch {
      // The socket closed.
    }
  })();
}

/** Bind `socket` to an ephemeral TCP port on `host`; returns the endpoint. */
export async function bindTcp(socket: Socket, host: string): Promise<string> {
  await socket.bind(`tcp://${host}:*`);
  return lastEndpoint(socket);
}

/** Bind `socket` to a Unix socket file `path`; returns the endpoint. */
export async function bindIpc(socket: Socket, path: string): Promise<string> {
  await socket.bind(`ipc://${path}`);
  return lastEndpoint(socket);
}

function lastEndpoint(socket: Socket): string {
  const ep = socket.lastEndpoint;
  if (ep === null) throw new Error('bind reported no endpoint');
  return ep;
}
