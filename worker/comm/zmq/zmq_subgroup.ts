/**
 * Subgroups over ZeroMQ (torch's dist.new_group): each one a ring of its own, with its own data
 * sockets, sequence numbers, timeout and diagnostics, beside the world's ring.
 *
 * Creating one is a collective of the world group: every member binds a new PULL (ipc:// and
 * tcp://, as the world's) and a PUSH, then one allGather over the world tells every rank the new
 * endpoints and checks that all ranks asked for the same ranks. Members connect their PUSH to the
 * next member's PULL. The group's probes and aborts travel over the ranks' existing control
 * sockets, tagged with the group's id (the count of newGroup calls, the same on every rank), so a
 * timeout in a subgroup names the group and those of its ranks that did not take part.
 * A subgroup of one rank is a SingleProcessGroup (no sockets). Closing the world closes its
 * subgroups. Subgroups always carry their data over ZeroMQ PUSH/PULL, whatever the world's data
 * transport (zmq_group.ts).
 */
import { join } from 'node:path';
import type { WorkerEnv } from '../../../shared/env.js';
import { CommError } from '../../../shared/errors.js';
import { allGatherJson, SingleProcessGroup, type ProcessGroup } from '../process_group.js';
import { createReducer, type ReducerKind } from '../reduce.js';
import { RingGroup } from '../ring_group.js';
import type { AllReduceAlgorithm, PeerControl, SubgroupFactory } from '../ring_group_options.js';
import { isRankStatus, type RankStatus } from '../stall.js';
import { request, type ControlMessage, type Warn } from './control.js';
import { endpointFor, type Endpoints, type PeerInfo } from './rendezvous.js';
import { bindIpc, bindTcp, clientOptions, Pull, Push, serverOptions, watchSocket, type Auth } from './zmq.js';
import { ZmqTransport } from './zmq_transport.js';

/** What the world group's creator shares with its subgroups. */
export interface SubgroupContext {
  readonly env: WorkerEnv;
  readonly auth: Auth | undefined;
  /** This rank's private socket directory. */
  readonly dir: string;
  /** The address tcp:// sockets bind on. */
  readonly host: string;
  readonly warn: Warn;
  readonly collectiveTimeoutMs?: number | undefined;
  readonly segmentBytes?: number | undefined;
  readonly gatherBytes?: number | undefined;
  readonly reducer?: ReducerKind | undefined;
  readonly allReduceAlgorithm?: AllReduceAlgorithm | 'auto' | undefined;
  /** The world's peer table (after the rendezvous). */
  readonly peers: () => readonly PeerInfo[];
  /** Registers a closer run when the world group closes. */
  readonly onWorldClose: (close: () => Promise<void>) => void;
}

/** How long an abort waits for each peer's acknowledgement (ms). */
const ABORT_ACK_MS = 1000;
const FLUSH_LINGER_MS = 5000;

/** Subgroups by id, for the control server's dispatch (zmq_group.ts). */
export class SubgroupRegistry {
  private readonly groups = new Map<number, RingGroup>();

  set(id: number, group: RingGroup): void {
    this.groups.set(id, group);
  }

  /** Answer a control message tagged with a group id; false when it is not one. */
  handle(msg: ControlMessage, reply: (m: ControlMessage) => Promise<void>): boolean {
    if (typeof msg.group !== 'number') return false;
    const group = this.groups.get(msg.group);
    if (msg.t === 'probe' && Number.isInteger(msg.as)) {
      // A rank that has not created the group yet has not called any of its collectives.
      const status: RankStatus = group?.status() ?? { rank: msg.as as number, seq: 0, collective: 'none (group not created yet)', state: 'idle' };
      void reply({ t: 'status', status });
      return true;
    }
    if (msg.t === 'abort' && Number.isInteger(msg.from) && typeof msg.message === 'string') {
      group?.abortedBy(msg.from as number, msg.message);
      void reply({ t: 'ack' });
      return true;
    }
    return false;
  }
}

interface Offer {
  readonly ranks: readonly number[];
  readonly nodeId: string;
  readonly data: Endpoints | null;
}

export function zmqSubgroups(ctx: SubgroupContext, registry: SubgroupRegistry): SubgroupFactory {
  return async (parent, ranks, id) => {
    const { env, auth, warn } = ctx;
    if (parent.worldSize !== env.worldSize)
      throw new CommError('newGroup over ZeroMQ is available on the world group only', 'create every subgroup from the world group');
    const me = ranks.indexOf(env.rank);
    const n = ranks.length;
    const closers: (() => void | Promise<void>)[] = [];
    const closeAll = async (): Promise<void> => {
      for (const c of closers.splice(0).reverse()) {
        try {
          await c();
        } catch {
          // Best effort: release the rest.
        }
      }
    };
    try {
      let data: Endpoints | null = null;
      let pull: Pull | undefined;
      let push: Push | undefined;
      if (me >= 0 && n > 1) {
        pull = new Pull({ ...serverOptions(auth), receiveHighWaterMark: 0, linger: 0 });
        const p = pull;
        closers.push(() => p.close());
        push = new Push({ ...clientOptions(auth), sendHighWaterMark: 0, linger: 0 });
        const q = push;
        closers.push(() => q.close());
        data = { ipc: await bindIpc(pull, join(ctx.dir, `group-${id}.sock`)), tcp: await bindTcp(pull, ctx.host) };
      }
      const offers = await allGatherJson<Offer>(parent, { ranks: [...ranks], nodeId: env.nodeId, data });
      const differ = offers.findIndex((o) => o.ranks.join(',') !== ranks.join(','));
      if (differ >= 0) {
        throw new CommError(
          `newGroup #${id}: rank ${env.rank} asked for ranks [${ranks.join(', ')}], rank ${differ} for [${offers[differ].ranks.join(', ')}]`,
          'every rank must call newGroup with the same ranks, in the same order',
        );
      }
      if (me < 0) return undefined;
      if (n === 1) return new SingleProcessGroup();
      const label = `group ${id} (world ranks ${ranks.join(', ')})`;
      const right = ranks[(me + 1) % n];
      const offer = offers[right];
      const rightPeer: PeerInfo = { rank: right, nodeId: offer.nodeId, data: offer.data!, control: { tcp: 'tcp://unused:0' } };
      push!.connect(endpointFor(rightPeer, 'data', env.nodeId));
      const control = new SubgroupControl(ctx, ranks, id, push!, closeAll);
      const group = new RingGroup({
        rank: me,
        worldSize: n,
        transport: new ZmqTransport(push!, pull!, warn),
        control,
        label,
        segmentBytes: ctx.segmentBytes,
        collectiveTimeoutMs: ctx.collectiveTimeoutMs,
        gatherBytes: ctx.gatherBytes,
        allReduceAlgorithm: ctx.allReduceAlgorithm,
        reducer: createReducer(ctx.reducer),
      });
      registry.set(id, group);
      const left = ranks[(me + n - 1) % n];
      watchSocket(pull!, `${label} data socket`, warn, () => void group.suspect(`its connection from rank ${left} closed`));
      watchSocket(push!, `${label} data socket`, warn, () => void group.suspect(`its connection to rank ${right} closed`));
      ctx.onWorldClose(() => group.close());
      return group;
    } catch (e) {
      await closeAll();
      throw e;
    }
  };
}

/** A subgroup's probes and aborts, over the world's control sockets. */
class SubgroupControl implements PeerControl {
  constructor(
    private readonly ctx: SubgroupContext,
    private readonly ranks: readonly number[],
    private readonly id: number,
    private readonly push: Push,
    private readonly release: () => Promise<void>,
  ) {}

  /** The other members: [group rank, their world peer info]. */
  private others(): [number, PeerInfo][] {
    const peers = this.ctx.peers();
    return this.ranks.flatMap((w, g) => (w === this.ctx.env.rank ? [] : [[g, peers[w]] as [number, PeerInfo]]));
  }

  private ask(p: PeerInfo, msg: ControlMessage, timeoutMs: number) {
    return request(endpointFor(p, 'control', this.ctx.env.nodeId), msg, this.ctx.auth, timeoutMs);
  }

  async probe(windowMs: number): Promise<ReadonlyMap<number, RankStatus>> {
    const others = this.others();
    const answers = await Promise.all(others.map(([g, p]) => this.ask(p, { t: 'probe', group: this.id, as: g, from: this.ctx.env.rank }, windowMs)));
    const statuses = new Map<number, RankStatus>();
    answers.forEach((a, i) => {
      const g = others[i][0];
      if (a?.t === 'status' && isRankStatus(a.status) && a.status.rank === g) statuses.set(g, a.status);
    });
    return statuses;
  }

  async abort(message: string): Promise<void> {
    const from = this.ranks.indexOf(this.ctx.env.rank);
    await Promise.all(this.others().map(([, p]) => this.ask(p, { t: 'abort', group: this.id, from, message }, ABORT_ACK_MS)));
  }

  async close(flush: boolean): Promise<void> {
    this.push.linger = flush ? FLUSH_LINGER_MS : 0;
    await this.release();
  }
}
