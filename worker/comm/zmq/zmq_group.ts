/**
 * The ZeroMQ process group: binds this rank's sockets, runs the rendezvous, connects the ring
 * and hands it all to a RingGroup.
 *
 * Sockets of one rank:
 *   data     PULL, bound on ipc:// (a file in a private directory under ROSEDIST_TMPDIR or
 *            os.tmpdir()) and tcp://;
 *            the left neighbour connects to it, over ipc when on the same node (same node id).
 *            PUSH, connected to the right neighbour's PULL.
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
import { RingGroup, type AllReduceAlgorithm, type PeerControl } from '../ring_group.js';
import { isRankStatus, type RankStatus } from '../stall.js';
import { bindIpc, bindTcp, clientOptions, Pull, Push, registerAuth, serverOptions, tokenFor, watchSocket, type Auth } from './zmq.js';
import { ZmqTransport } from './zmq_transport.js';

export interface ZmqGroupOptions {
  readonly rendezvousTimeoutMs: number;
  readonly collectiveTimeoutMs: number;
  readonly segmentBytes: number;
  readonly warn: Warn;
  readonly reducer?: ReducerKind | undefined;
  readonly gatherBytes?: number | undefined;
  readonly allReduceAlgorithm?: AllReduceAlgorithm | 'auto' | undefined;
}

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

  constructor(
    private readonly env: WorkerEnv,
    private readonly auth: Auth | undefined,
    readonly push: Push,
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
    this.push.linger = flush ? FLUSH_LINGER_MS : 0;
    for (const close of this.closers.splice(0).reverse()) {
      try {
        await close();
      } catch {
        // Closing is best effort: the others must still be released.
      }
    }
  }
}

/** Create this rank's group (worldSize ≥ 2). Rejects with a CommError; releases all on failure. */
export async function createZmqGroup(env: WorkerEnv, opts: ZmqGroupOptions): Promise<RingGroup> {
  const { warn } = opts;
  const auth: Auth | undefined = env.secret === undefined ? undefined : { domain: `rosedist/${env.runId}/${env.rank}/${randomUUID()}`, token: tokenFor(env.secret) };
  const push = new Push({ ...clientOptions(auth), sendHighWaterMark: 0, linger: 0 });
  const links = new ZmqLinks(env, auth, push);
  links.closers.push(() => push.close());
  try {
    if (auth !== undefined) links.closers.push(await registerAuth(auth, warn));
    // Under the launcher's per-run directory when there is one: it is removed even if we are killed.
    const dir = mkdtempSync(join(env.tmpDir ?? tmpdir(), 'rosedist-pg-'));
    links.closers.push(() => rmSync(dir, { recursive: true, force: true }));
    const masterHost = env.nnodes === 1 ? '127.0.0.1' : await ipv4(env.masterAddr);
    const host = masterHost.startsWith('127.') ? '127.0.0.1' : await localAddressToward(masterHost);
    const master = `tcp://${masterHost}:${env.masterPort}`;

    const pull = new Pull({ ...serverOptions(auth), receiveHighWaterMark: 0, linger: 0 });
    links.closers.push(() => pull.close());
    const data = { ipc: await bindIpc(pull, join(dir, 'data.sock')), tcp: await bindTcp(pull, host) };

    const server = new ControlServer(auth, warn);
    links.closers.push(() => server.close());
    let control: PeerInfo['control'];
    if (env.rank === 0) {
      try {
        await server.router.bind(master);
      } catch (e) {
        throw new CommError(`rank 0 cannot listen at ${master}: ${(e as Error).message}`, 'pick a free MASTER_PORT (another run may be using this one), and run rank 0 on the host MASTER_ADDR names');
      }
      control = { tcp: master };
    } else {
      control = { ipc: await bindIpc(server.router, join(dir, 'control.sock')), tcp: await bindTcp(server.router, host) };
    }
    server.start();

    const self: PeerInfo = { rank: env.rank, nodeId: env.nodeId, data, control };
    links.peers = await rendezvous({ env, self, server: env.rank === 0 ? server : undefined, master, auth, timeoutMs: opts.rendezvousTimeoutMs, warn });

    push.connect(endpointFor(links.peers[(env.rank + 1) % env.worldSize], 'data', env.nodeId));
    const group = new RingGroup({
      rank: env.rank,
      worldSize: env.worldSize,
      transport: new ZmqTransport(push, pull, warn),
      control: links,
      segmentBytes: opts.segmentBytes,
      collectiveTimeoutMs: opts.collectiveTimeoutMs,
      reducer: createReducer(opts.reducer),
      gatherBytes: opts.gatherBytes,
      allReduceAlgorithm: opts.allReduceAlgorithm,
    });
    // A lost ring connection (a neighbour died or closed) makes the group check at once whether
    // a collective in progress can still finish, instead of waiting for the timeout.
    const { left, right } = neighbours(env.rank, env.worldSize);
    watchSocket(pull, 'data socket', warn, () => void group.suspect(`its connection from rank ${left} closed`));
    watchSocket(push, 'data socket', warn, () => void group.suspect(`its connection to rank ${right} closed`));
    server.handler = ({ msg, reply }) => {
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
