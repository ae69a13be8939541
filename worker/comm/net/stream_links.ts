/**
 * The ring's data connections over kernel stream sockets (stream_transport.ts carries the
 * messages). Each rank listens (a Unix socket file and a TCP port, published in the rendezvous);
 * its RIGHT neighbour connects to it and reads, it writes: the reading side is the connecting
 * one because only a connecting socket can be given Node's `onread` (read into chosen memory).
 *
 * The connecting rank first sends a hello of HELLO_BYTES: magic 'RDSD', u32 rank, then the run's
 * token (zmq.ts tokenFor: an HMAC of the secret, 64 hex characters; zeros without a secret). The
 * listening rank accepts the first connection whose hello names its right neighbour and carries
 * the token (compared in constant time), and refuses, logging the peer's address and why, every
 * other: a stranger without the secret can neither send nor receive ring data. Without a secret
 * only the rank is checked, as ZeroMQ without one checked nothing.
 */
import { timingSafeEqual } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { CommError } from '../../../shared/errors.js';
import type { ReadTarget } from './stream_transport.js';

const MAGIC = 0x44534452; // 'RDSD' read as little-endian u32
const TOKEN_BYTES = 64;
export const HELLO_BYTES = 8 + TOKEN_BYTES;

type Warn = (message: string) => void;

/** The hello of rank `rank` with `token` (undefined: no secret). */
export function encodeHello(rank: number, token: string | undefined): Uint8Array {
  const hello = new Uint8Array(HELLO_BYTES);
  const v = new DataView(hello.buffer);
  v.setUint32(0, MAGIC, true);
  v.setUint32(4, rank, true);
  if (token !== undefined) hello.set(Buffer.from(token.padEnd(TOKEN_BYTES, '0').slice(0, TOKEN_BYTES), 'latin1'), 8);
  return hello;
}

/** Why `hello` is not rank `from`'s with `token`; undefined when it is. */
export function checkHello(hello: Uint8Array, from: number, token: string | undefined): string | undefined {
  const v = new DataView(hello.buffer, hello.byteOffset, hello.byteLength);
  if (hello.byteLength !== HELLO_BYTES || v.getUint32(0, true) !== MAGIC) return 'not a rosedist data connection';
  const want = encodeHello(from, token);
  if (!timingSafeEqual(hello.subarray(8), want.subarray(8))) return "wrong credentials (not started with this run's secret)";
  if (v.getUint32(4, true) !== from) return `it claims rank ${v.getUint32(4, true)}, only rank ${from} connects here`;
  return undefined;
}

/** Parse a data endpoint of the rendezvous ('ipc://PATH' or 'tcp://HOST:PORT'). */
function target(endpoint: string): { path: string } | { host: string; port: number } {
  if (endpoint.startsWith('ipc://')) return { path: endpoint.slice(6) };
  const m = /^tcp:\/\/(.+):(\d+)$/.exec(endpoint);
  if (m === null) throw new CommError(`bad data endpoint ${endpoint}`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

function listen(server: Server, options: { path: string } | { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/**
 * This rank's listening side: resolves `accepted` with the right neighbour's authenticated
 * connection (the socket this rank writes to).
 */
export class DataServer {
  readonly accepted: Promise<Socket>;
  private resolveAccepted!: (s: Socket) => void;
  private done = false;
  private readonly servers: Server[] = [];

  private constructor(
    private readonly right: number,
    private readonly token: string | undefined,
    private readonly warn: Warn,
  ) {
    this.accepted = new Promise((resolve) => {
      this.resolveAccepted = resolve;
    });
  }

  /** Listen on a Unix socket at `ipcPath` and on `host`'s ephemeral TCP port; endpoints as the rendezvous publishes them. */
  static async listen(
    ipcPath: string,
    host: string,
    right: number,
    token: string | undefined,
    warn: Warn,
  ): Promise<{ server: DataServer; endpoints: { ipc: string; tcp: string } }> {
    const ds = new DataServer(right, token, warn);
    const ipc = createServer((s) => ds.onConnection(s));
    const tcp = createServer((s) => ds.onConnection(s));
    ds.servers.push(ipc, tcp);
    try {
      await listen(ipc, { path: ipcPath });
      await listen(tcp, { host, port: 0 });
    } catch (e) {
      ds.close();
      throw new CommError(`cannot listen for ring data: ${(e as Error).message}`);
    }
    const addr = tcp.address();
    if (addr === null || typeof addr === 'string') throw new CommError('the data socket reported no TCP port');
    const shown = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    return { server: ds, endpoints: { ipc: `ipc://${ipcPath}`, tcp: `tcp://${shown}:${addr.port}` } };
  }

  private onConnection(s: Socket): void {
    const who = s.remoteAddress ?? 'a local process';
    s.on('error', () => {}); // a refused or dropped peer; the accepted one is watched by its owner
    if (this.done) {
      this.warn(`data socket: refused a connection from ${who}: the ring's connection is already established`);
      s.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (d: Buffer): void => {
      chunks.push(d);
      got += d.byteLength;
      if (got < HELLO_BYTES) return;
      s.off('data', onData);
      s.pause();
      const all = Buffer.concat(chunks);
      const why = got > HELLO_BYTES ? 'it sent data before being accepted' : checkHello(all, this.right, this.token);
      if (why !== undefined || this.done) {
        this.warn(`data socket: refused a connection from ${who}: ${why ?? "the ring's connection is already established"}`);
        s.destroy();
        return;
      }
      this.done = true;
      s.setNoDelay(true);
      // Nothing more comes this way; reading on lets the socket see its peer's end and close.
      s.on('data', () => {});
      s.resume();
      this.resolveAccepted(s);
    };
    s.on('data', onData);
  }

  /** Stop listening (the accepted connection is its owner's to close). */
  close(): void {
    for (const s of this.servers) s.close();
  }
}

/**
 * Connect to the left neighbour's data endpoint and say hello; the socket reads into `into`
 * (no allocation per read). Resolves once connected; rejects with a CommError.
 */
export function connectLeft(endpoint: string, hello: Uint8Array, into: ReadTarget, left: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const onread = { buffer: () => into.next(), callback: (nread: number): boolean => (into.onRead(nread), true) };
    const t = target(endpoint);
    const s = 'path' in t ? connect({ path: t.path, onread }) : connect({ host: t.host, port: t.port, onread });
    const onError = (e: Error): void => reject(new CommError(`cannot connect to rank ${left}'s data socket at ${endpoint}: ${e.message}`));
    s.once('error', onError);
    s.once('connect', () => {
      s.off('error', onError);
      s.setNoDelay(true);
      s.write(hello);
      resolve(s);
    });
  });
}
