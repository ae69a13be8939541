/**
 * Rendezvous: how the ranks of a group find each other.
 *
 * Rank 0's control socket is bound at MASTER_ADDR:MASTER_PORT. Every other rank connects to it
 * and sends `hello` (its rank, node id, and the endpoints of its own data and control sockets);
 * rank 0 answers `ack` at once and, when all ranks are there, sends each the peer table
 * (`welcome`). If some rank has not arrived when the timeout expires, rank 0 fails with an error
 * naming the missing ranks and the address it waited on, and sends that error (`fail`) to the
 * ranks that did arrive, so that every rank stops with the same message. A rank that hears
 * nothing from rank 0 within the timeout names rank 0; one that was acknowledged waits a little
 * longer for rank 0's verdict (ranks start at slightly different times).
 *
 * A hello from another run or attempt (run id, restart count, world size) or a duplicate rank is
 * refused with a reason and logged; malformed messages are dropped and logged.
 */
import type { WorkerEnv } from '../../../shared/env.js';
import { CommError } from '../../../shared/errors.js';
import { parseControl, type ControlMessage, type ControlServer, type Incoming, type Warn } from './control.js';
import { clientOptions, Dealer, type Auth } from './zmq.js';

/** Where a rank's socket can be reached: over ipc:// from its own node, over tcp:// from anywhere. */
export interface Endpoints {
  readonly ipc?: string | undefined;
  readonly tcp: string;
}

export interface PeerInfo {
  readonly rank: number;
  readonly nodeId: string;
  readonly data: Endpoints;
  readonly control: Endpoints;
}

/** The endpoint to use for `to` from a rank on node `fromNodeId`. */
export function endpointFor(to: PeerInfo, which: 'data' | 'control', fromNodeId: string): string {
  const ep = to[which];
  return to.nodeId === fromNodeId && ep.ipc !== undefined ? ep.ipc : ep.tcp;
}

const ENDPOINT = /^(ipc|tcp):\/\/\S+$/;

function isEndpoints(x: unknown): x is Endpoints {
  const e = x as Partial<Endpoints> | null;
  return (
    typeof e === 'object' &&
    e !== null &&
    typeof e.tcp === 'string' &&
    ENDPOINT.test(e.tcp) &&
    (e.ipc === undefined || (typeof e.ipc === 'string' && ENDPOINT.test(e.ipc)))
  );
}

function isPeerInfo(x: unknown, worldSize: number): x is PeerInfo {
  const p = x as Partial<PeerInfo> | null;
  return (
    typeof p === 'object' &&
    p !== null &&
    Number.isInteger(p.rank) &&
    p.rank! >= 0 &&
    p.rank! < worldSize &&
    typeof p.nodeId === 'string' &&
    isEndpoints(p.data) &&
    isEndpoints(p.control)
  );
}

export interface RendezvousOptions {
  readonly env: WorkerEnv;
  /** This rank's entry of the peer table. */
  readonly self: PeerInfo;
  /** Rank 0's control server, bound at `master`. */
  readonly server?: ControlServer;
  /** tcp://MASTER_ADDR:MASTER_PORT */
  readonly master: string;
  readonly auth: Auth | undefined;
  readonly timeoutMs: number;
  readonly warn: Warn;
}

/** The peer table, indexed by rank. Rejects with a CommError naming the missing ranks. */
export function rendezvous(opts: RendezvousOptions): Promise<PeerInfo[]> {
  return opts.env.rank === 0 ? serve(opts) : join(opts);
}

/** Why rank 0 refuses `hello`, or undefined when it is a valid member of this group. */
function refusal(hello: ControlMessage, env: WorkerEnv): string | undefined {
  if (hello.worldSize !== env.worldSize) return `world size ${String(hello.worldSize)}, expected ${env.worldSize}`;
  if (hello.runId !== env.runId) return `run id ${JSON.stringify(hello.runId)}, expected ${JSON.stringify(env.runId)}`;
  if (hello.restartCount !== env.restartCount) return `restart ${String(hello.restartCount)}, expected ${env.restartCount}`;
  if (!isPeerInfo(hello.peer, env.worldSize) || hello.peer.rank === 0) return 'malformed peer description';
  return undefined;
}

function serve(opts: RendezvousOptions): Promise<PeerInfo[]> {
  const { env, server, warn } = opts;
  if (server === undefined) throw new Error('rank 0 needs its control server for the rendezvous');
  const peers: (PeerInfo | undefined)[] = new Array(env.worldSize).fill(undefined);
  peers[0] = opts.self;
  const replies = new Map<number, Incoming['reply']>();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      const missing = peers.flatMap((p, r) => (p === undefined ? [r] : []));
      const err = new CommError(
        `rendezvous timed out after ${opts.timeoutMs / 1000} s at ${opts.master}: ` +
          `rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')} of ${env.worldSize} did not arrive`,
        'check that every rank was started with the same MASTER_ADDR/MASTER_PORT and WORLD_SIZE; raise the rendezvous timeout if they start slowly',
      );
      server.handler = () => {};
      // Reject only once the others' copies of the error are queued (closing follows).
      void Promise.all([...replies.values()].map((reply) => reply({ t: 'fail', message: err.message, hint: err.hint }))).finally(() => reject(err));
    }, opts.timeoutMs);
    server.handler = ({ msg, reply }) => {
      if (msg.t !== 'hello') {
        server.drop(`a '${msg.t}' message during the rendezvous`);
        return;
      }
      const why = refusal(msg, env);
      const peer = msg.peer as PeerInfo;
      const dup = why === undefined && peers[peer.rank] !== undefined ? `rank ${peer.rank} has already joined` : undefined;
      if (why !== undefined || dup !== undefined) {
        warn(`rendezvous: refused a hello: ${why ?? dup}`);
        void reply({ t: 'reject', reason: why ?? dup });
        return;
      }
      peers[peer.rank] = peer;
      replies.set(peer.rank, reply);
      void reply({ t: 'ack' });
      if (peers.every((p) => p !== undefined)) {
        clearTimeout(timer);
        for (const answer of replies.values()) void answer({ t: 'welcome', peers });
        resolve(peers as PeerInfo[]);
      }
    };
  });
}

async function join(opts: RendezvousOptions): Promise<PeerInfo[]> {
  const { env, master } = opts;
  const dealer = new Dealer({ ...clientOptions(opts.auth), linger: 0 });
  const start = Date.now();
  // Once acknowledged, rank 0 is alive and reports the outcome at its own deadline.
  const grace = Math.max(2000, opts.timeoutMs / 10);
  let acked = false;
  try {
    dealer.connect(master);
    await dealer.send(JSON.stringify({ t: 'hello', worldSize: env.worldSize, runId: env.runId, restartCount: env.restartCount, peer: opts.self }));
    for (;;) {
      const left = start + opts.timeoutMs + (acked ? grace : 0) - Date.now();
      if (left <= 0) break;
      dealer.receiveTimeout = left;
      let frames: Buffer[];
      try {
        frames = await dealer.receive();
      } catch {
        continue; // timed out: the loop checks the deadline
      }
      const msg = frames.length === 1 ? parseControl(frames[0]) : undefined;
      if (msg?.t === 'ack') acked = true;
      else if (msg?.t === 'welcome') return checkTable(msg.peers, env, master);
      else if (msg?.t === 'fail') throw new CommError(String(msg.message), typeof msg.hint === 'string' ? msg.hint : undefined);
      else if (msg?.t === 'reject')
        throw new CommError(`rank 0 at ${master} refused rank ${env.rank}: ${String(msg.reason)}`, 'start every rank of a run with the same environment');
      else opts.warn(`rendezvous: dropped a malformed answer from ${master}`);
    }
  } finally {
    dealer.close();
  }
  throw new CommError(
    acked
      ? `rendezvous at ${master}: rank 0 acknowledged rank ${env.rank} but sent no peer table within ${(opts.timeoutMs + grace) / 1000} s`
      : `rendezvous timed out after ${opts.timeoutMs / 1000} s at ${master}: rank 0 did not answer`,
    'check that rank 0 is running and that MASTER_ADDR/MASTER_PORT point at it',
  );
}

function checkTable(table: unknown, env: WorkerEnv, master: string): PeerInfo[] {
  if (!Array.isArray(table) || table.length !== env.worldSize || !table.every((p, r) => isPeerInfo(p, env.worldSize) && p.rank === r)) {
    throw new CommError(`rendezvous at ${master}: rank 0 sent a malformed peer table`, 'every rank of a run must run the same rosedist version');
  }
  return table as PeerInfo[];
}
