/**
 * The ZeroMQ process group: binds this rank's sockets, runs the rendezvous, connects the ring
 * and hands it all to a RingGroup.
 *
 * Sockets of one rank:
 *   data     (default, 'zmq') PULL, bound on ipc:// (a file in a private directory under
 *            ROSEDIST_TMPDIR or os.tmpdir()) and tcp://; the left neighbour's PUSH connects to
 *            it, over ipc when on the same node (same node id).
 *            ('stream', opt-in: net/) a listening Unix socket and TCP port; the right neighbour
 *            connects and reads what this rank writes; this rank connects to its left
 *            neighbour's likewise. Received into reused memory: no collection forced by received
 *            data, but the socket I/O runs on the JavaScript thread (net/stream_transport.ts
 *            says what that costs on a busy machine).
 *   control  ROUTER (control.ts): rank 0's at tcp://MASTER_ADDR:MASTER_PORT, the others' on
 *            ipc:// and an ephemeral tcp:// port; answers probes and aborts.
 * Addresses: a single-node run (nnodes 1) uses 127.0.0.1 for everything, whatever MASTER_ADDR
 * says, so nothing listens beyond loopback; a multi-node run binds on the interface that routes
 * to MASTER_ADDR. With a run secret every socket authenticates its peers (zmq.ts).
 */
import { randomUUID } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { WorkerEnv } from '../../../shared/env.js';
import { CommError } from '../../../shared/errors.js';
import { neighbours } from '../chunks.js';
import { ControlServer, request, type Warn } from './control.js';
import { endpointFor, rendezvous, type PeerInfo } from './rendezvous.js';
import { createReducer, type ReducerKind } from '../reduce.js';
import { RingGroup } from '../ring_group.js';
import { DEFAULT_SEGMENT_BYTES, type AllReduceAlgorithm, type PeerControl } from '../ring_group_options.js';
import { isRankStatus, type RankStatus } from '../stall.js';
import { bindIpc, bindTcp, clientOptions, Pull, Push, registerAuth, serverOptions, tokenFor, watchSocket, type Auth } from './zmq.js';
import { ZmqTransport } from './zmq_transport.js';
import type { Socket as NetSocket } from 'node:net';
import { connectLeft, DataServer, encodeHello } from '../net/stream_links.js';
import { BufferPool, StreamTransport } from '../net/stream_transport.js';
import type { RingTransport } from '../transport.js';

/** Which sockets carry the ring's data: ZeroMQ PUSH/PULL (default) or kernel stream sockets read into reused memory. */
export type DataTransportKind = 'stream' | 'zmq';
import { SubgroupRegistry, zmqSubgroups } from './zmq_subgroup.js';

export interface ZmqGroupOptions {
  readonly rendezvousTimeoutMs: number;
  /** Undefined: the ring group's defaults (ring_group_options.ts). */
  readonly collectiveTimeoutMs?: number | undefined;
  readonly segmentBytes?: number | undefined;
  readonly warn: Warn;
  readonly reducer?: ReducerKind | undefined;
  readonly gatherBytes?: number | undefined;
  readonly allReduceAlgorithm?: AllReduceAlgorithm | 'auto' | undefined;
  readonly dataTransport?: DataTransportKind | undefined;
}

/** Received payload memory a rank keeps for reuse (stream transport), at most. */
const POOL_FREE_BYTES = 256 << 20;

/** How long a flushing close waits for queued ring messages to leave (ms). */
const FLUSH_LINGER_MS = 5000;
/** How long an abort waits for each peer's acknowledgement (ms). */
const ABORT_ACK_MS = 1000;

async function ipv4(host: string): Promise<string> {
  if (isIP(host) !== 0) return host;
  try {
    return (await lookup(host, { family: 4 })).address;
  } catch {
    throw new CommError(`cannot resolve MASTER_ADDR=${host}`, 'set MASTER_ADDR to an IP address or a resolvable host name');
  }
}

/** "10.77.0.12, node n2/1": a peer's host, from its data endpoint (TCP) and its node id. */
function hostOfPeer(p: PeerInfo | undefined): string | undefined {
  if (p === undefined) return undefined;
  const ip = /^tcp:\/\/(.+):\d+$/.exec(p.data.tcp)?.[1];
  return `${ip ?? 'unknown address'}, node ${p.nodeId}`;
}

/** The local address the kernel would use to reach `ip` (a UDP "connect" sends nothing). */
function localAddressToward(ip: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    s.on('error', reject);
    s.connect(9, ip, () => {
      const { address } = s.address();
      s.close();
      resolve(address);
    });
  });
}

function isRank(x: unknown, worldSize: number): x is number {
  return Number.isInteger(x) && (x as number) >= 0 && (x as number) < worldSize;
}

/** The peers' sockets of a group, as the RingGroup's PeerControl; owns every socket and file. */
class ZmqLinks implements PeerControl {
  peers: PeerInfo[] = [];
  readonly closers: (() => void | Promise<void>)[] = [];

  /** ZeroMQ data transport: the PUSH, whose queue a flushing close lets drain. */
  push: Push | undefined;
  /** Stream data transport: the connection this rank writes to, which a flushing close ends. */
  outbound: NetSocket | undefined;

  constructor(
    private readonly env: WorkerEnv,
    private readonly auth: Auth | undefined,
  ) {}

  private others(): PeerInfo[] {
    return this.peers.filter((p) => p.rank !== this.env.rank);
  }

  private ask(p: PeerInfo, msg: { t: string } & Record<string, unknown>, timeoutMs: number) {
    return request(endpointFor(p, 'control', this.env.nodeId), msg, this.auth, timeoutMs);
  }

  async probe(windowMs: number): Promise<ReadonlyMap<number, RankStatus>> {
    const answers = await Promise.all(this.others().map((p) => this.ask(p, { t: 'probe', from: this.env.rank }, windowMs)));
    const statuses = new Map<number, RankStatus>();
    answers.forEach((a, i) => {
      const rank = this.others()[i].rank;
      if (a?.t === 'status' && isRankStatus(a.status) && a.status.rank === rank) statuses.set(rank, a.status);
    });
    return statuses;
  }

  async abort(message: string): Promise<void> {
    await Promise.all(this.others().map((p) => this.ask(p, { t: 'abort', from: this.env.rank, message }, ABORT_ACK_MS)));
  }

  async close(flush: boolean): Promise<void> {
    // After a successful collective, the last forwarded segments may still be queued.
    if (this.push !== undefined) this.push.linger = flush ? FLUSH_LINGER_MS : 0;
    const out = this.outbound;
    if (out !== undefined && flush && !out.destroyed) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, FLUSH_LINGER_MS);
        out.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
        out.end();
      });
    }
    out?.destroy();
    for (const close of this.closers.splice(0).reverse()) {
      try {
        await close();
      } catch {
        // Closing is best effort: the others must still be released.
      }
    }
  }
}

/** The right neighbour's data connection, or a CommError naming it after `timeoutMs`. */
async function acceptedWithin(server: DataServer, right: number, timeoutMs: number): Promise<NetSocket> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(new CommError(`rank ${right} did not connect to this rank's data socket within ${timeoutMs / 1000} s`, `check that rank ${right} is running`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([server.accepted, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Create this rank's group (worldSize ≥ 2). Rejects with a CommError; releases all on failure. */
export async function createZmqGroup(env: WorkerEnv, opts: ZmqGroupOptions): Promise<RingGroup> {
  const { warn } = opts;
  const auth: Auth | undefined =
    env.secret === undefined ? undefined : { domain: `rosedist/${env.runId}/${env.rank}/${randomUUID()}`, token: tokenFor(env.secret) };
  const kind = opts.dataTransport ?? 'zmq';
  const links = new ZmqLinks(env, auth);
  const { left, right } = neighbours(env.rank, env.worldSize);
  try {
    if (auth !== undefined) links.closers.push(await registerAuth(auth, warn));
    // Under the launcher's per-run directory when there is one: it is removed even if we are killed.
    const dir = mkdtempSync(join(env.tmpDir ?? tmpdir(), 'rosedist-pg-'));
    links.closers.push(() => rmSync(dir, { recursive: true, force: true }));
    const masterHost = env.nnodes === 1 ? '127.0.0.1' : await ipv4(env.masterAddr);
    const host = masterHost.startsWith('127.') ? '127.0.0.1' : await localAddressToward(masterHost);
    const master = `tcp://${masterHost}:${env.masterPort}`;

    let data: PeerInfo['data'];
    let pull: Pull | undefined;
    let dataServer: DataServer | undefined;
    if (kind === 'zmq') {
      const push = new Push({ ...clientOptions(auth), sendHighWaterMark: 0, linger: 0 });
      links.push = push;
      links.closers.push(() => push.close());
      const p = new Pull({ ...serverOptions(auth), receiveHighWaterMark: 0, linger: 0 });
      pull = p;
      links.closers.push(() => p.close());
      data = { ipc: await bindIpc(p, join(dir, 'data.sock')), tcp: await bindTcp(p, host) };
    } else {
      const listening = await DataServer.listen(join(dir, 'data.sock'), host, right, auth?.token, warn);
      dataServer = listening.server;
      links.closers.push(() => listening.server.close());
      data = listening.endpoints;
    }

    const server = new ControlServer(auth, warn);
    links.closers.push(() => server.close());
    let control: PeerInfo['control'];
    if (env.rank === 0) {
      try {
        await server.router.bind(master);
      } catch (e) {
        throw new CommError(
          `rank 0 cannot listen at ${master}: ${(e as Error).message}`,
          'pick a free MASTER_PORT (another run may be using this one), and run rank 0 on the host MASTER_ADDR names',
        );
      }
      control = { tcp: master };
    } else {
      control = { ipc: await bindIpc(server.router, join(dir, 'control.sock')), tcp: await bindTcp(server.router, host) };
    }
    server.start();

    const self: PeerInfo = { rank: env.rank, nodeId: env.nodeId, data, control };
    links.peers = await rendezvous({ env, self, server: env.rank === 0 ? server : undefined, master, auth, timeoutMs: opts.rendezvousTimeoutMs, warn });

    let transport: RingTransport;
    let inbound: NetSocket | undefined;
    if (links.push !== undefined && pull !== undefined) {
      links.push.connect(endpointFor(links.peers[right], 'data', env.nodeId));
      transport = new ZmqTransport(links.push, pull, warn);
    } else {
      const stream = new StreamTransport(new BufferPool(opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES, POOL_FREE_BYTES), left, right);
      const inSocket = await connectLeft(endpointFor(links.peers[left], 'data', env.nodeId), encodeHello(env.rank, auth?.token), stream, left);
      inbound = inSocket;
      links.closers.push(() => void inSocket.destroy());
      links.outbound = await acceptedWithin(dataServer!, right, opts.rendezvousTimeoutMs);
      links.outbound.on('error', () => {}); // seen as its 'close'
      stream.attach(links.outbound);
      transport = stream;
    }
    const registry = new SubgroupRegistry();
    const subgroups = zmqSubgroups(
      { ...opts, env, auth, dir, host, peers: () => links.peers, onWorldClose: (close) => void links.closers.push(close) },
      registry,
    );
    const group = new RingGroup({
      subgroups,
      rank: env.rank,
      worldSize: env.worldSize,
      transport,
      control: links,
      segmentBytes: opts.segmentBytes,
      collectiveTimeoutMs: opts.collectiveTimeoutMs,
      reducer: createReducer(opts.reducer),
      gatherBytes: opts.gatherBytes,
      allReduceAlgorithm: opts.allReduceAlgorithm,
      hostOf: (r) => hostOfPeer(links.peers[r]),
    });
    // A lost ring connection (a neighbour died or closed) makes the group check at once whether
    // a collective in progress can still finish, instead of waiting for the timeout.
    const fromLeft = (): void => void group.suspect(`its connection from rank ${left} closed`);
    const toRight = (): void => void group.suspect(`its connection to rank ${right} closed`);
    if (pull !== undefined && links.push !== undefined) {
      watchSocket(pull, 'data socket', warn, fromLeft);
      watchSocket(links.push, 'data socket', warn, toRight);
    } else {
      inbound!.on('error', () => {}); // seen as its 'close'
      inbound!.on('close', fromLeft);
      links.outbound!.on('close', toRight);
    }
    server.handler = ({ msg, reply }) => {
      if (registry.handle(msg, reply)) return;
      if (msg.t === 'probe') {
        void reply({ t: 'status', status: group.status() });
      } else if (msg.t === 'abort' && isRank(msg.from, env.worldSize) && typeof msg.message === 'string') {
        group.abortedBy(msg.from, msg.message);
        void reply({ t: 'ack' });
      } else if (msg.t === 'hello') {
        warn('refused a hello: the rendezvous of this group is over');
        void reply({ t: 'reject', reason: 'the group is already complete' });
      } else {
        server.drop(`an unexpected '${msg.t}' message`);
      }
    };
    return group;
  } catch (e) {
    await links.close(false);
    throw e;
  }
}
