/**
 * The coordinator of an elastic run (`--nnodes MIN:MAX`, torchrun's meaning), living in the
 * launcher that hosts the rendezvous (node 0). Pure logic over `send`, like launcher/coordinator.ts,
 * which stays the coordinator of fixed-size runs.
 *
 * A run is a sequence of rounds (attempts). A round first gathers nodes: it starts at once when MAX
 * are connected, or --rdzv-last-call after MIN are; with fewer than MIN for --rdzv-timeout the run
 * fails, saying how many came and how many were needed. Node ranks follow the order in which the
 * launchers arrived (node 0, the host, first), so survivors keep their relative order. Then
 * every member starts its workers; a round ends, and the next one gathers, when
 *   - a member is lost (its connection closed, it stopped answering heartbeats, or it was
 *     interrupted, e.g. a spot machine's SIGTERM), or a member's workers failed: counted against
 *     --max-restarts, as in torchrun, where the survivors' workers fail with the lost peer;
 *   - a node is waiting to join and there is room (fewer than MAX members): not counted, as
 *     torchrun's agent restarts for `num_nodes_waiting` without spending a restart.
 * Workers resume from the last checkpoint with the new world size (the trainer's --resume).
 * The host's own loss ends the run: see launcher/elastic_rendezvous.ts for why the role stays.
 */
import { orderFailures, type ProcessFailure } from './failures.js';
import type { ToCoordinator, ToNode } from './protocol.js';
import { setLongTimeout, type LongTimer } from '../shared/timers.js';

export interface ElasticOptions {
  readonly runId: string;
  readonly minNodes: number;
  readonly maxNodes: number;
  readonly rdzvTimeoutMs: number;
  readonly lastCallMs: number;
  readonly maxRestarts: number;
}

/** A connected launcher: how it is named in messages (host name, or host:pid when shared) and its workers. */
export interface NodeInfo {
  readonly label: string;
  readonly localWorldSize: number;
}

/** The id of the host's own node (it is always connected, and always node rank 0). */
export const HOST_ID = 0;

export class ElasticCoordinator {
  private phase: 'gathering' | 'running' | 'ended' = 'gathering';
  /** Connected launchers by id, in order of arrival (a Map keeps insertion order). */
  private readonly nodes = new Map<number, NodeInfo>();
  /** The running round's members, by node rank. */
  private members: number[] = [];
  private previous: ReadonlyMap<number, string> = new Map();
  private lastWorldSize: number | undefined;
  private round = -1;
  private restarts = 0;
  private readonly results = new Map<number, readonly ProcessFailure[]>();
  private stopping = false;
  /** Members lost during this round, by label. */
  private lostThisRound: string[] = [];
  private fatal: string | undefined;
  // Any length (shared/timers.ts): a huge --rdzv-timeout must not fire at once.
  private deadline: LongTimer | undefined;
  private lastCall: LongTimer | undefined;

  /** `send(id, msg)` delivers to a node and must not call back synchronously; `say` logs one line. */
  constructor(
    private readonly opts: ElasticOptions,
    host: NodeInfo,
    private readonly send: (id: number, msg: ToNode) => void,
    private readonly say: (line: string) => void = () => {},
  ) {
    this.nodes.set(HOST_ID, host);
  }

  get isEnded(): boolean {
    return this.phase === 'ended';
  }

  /** Start gathering the first round. */
  begin(): void {
    this.gather();
  }

  /** A launcher authenticated and asks to take part. */
  join(id: number, info: NodeInfo): void {
    if (this.phase === 'ended') return;
    this.nodes.set(id, info);
    if (this.phase === 'gathering') {
      this.say(`node ${info.label} joined: ${this.nodes.size} node(s) for round ${this.round + 1} (--nnodes ${this.range})`);
      this.checkGathered();
    } else if (this.members.length < this.opts.maxNodes) {
      this.say(`node ${info.label} is waiting to join: ending round ${this.round} for a new one`);
      this.stopAll();
    } else {
      this.say(`node ${info.label} is waiting: the run has ${this.opts.maxNodes} nodes (MAX); it joins when one leaves`);
    }
  }

  /** Node `id`'s launcher is gone: connection closed, silent past the heartbeat timeout, or interrupted. */
  lost(id: number, why: string): void {
    const info = this.nodes.get(id);
    if (this.phase === 'ended' || info === undefined || id === HOST_ID) return;
    this.nodes.delete(id);
    this.say(`node ${info.label} lost (${why})`);
    if (this.phase === 'gathering') {
      this.checkGathered();
      return;
    }
    if (!this.members.includes(id)) return;
    this.lostThisRound.push(info.label);
    this.results.set(id, []);
    this.stopAll();
    this.decideIfComplete();
  }

  receive(id: number, msg: ToCoordinator): void {
    if (this.phase === 'ended') return;
    if (msg.type === 'abort') {
      // The host interrupted ends the run; another launcher interrupted (a preempted machine's
      // SIGTERM) is a node leaving.
      if (id !== HOST_ID) return this.lost(id, `its launcher received ${msg.signal}`);
      this.fatal ??= `the launcher of node 0 (${this.nodes.get(HOST_ID)?.label}, the rendezvous host) received ${msg.signal}`;
      if (this.phase === 'gathering') return this.end(false, [], this.fatal);
      this.stopAll();
      return;
    }
    // Messages about an earlier round, or from a node not in this one, change nothing.
    if (this.phase !== 'running' || msg.attempt !== this.round || !this.members.includes(id)) return;
    if (msg.type === 'failing') return this.stopAll();
    this.results.set(id, msg.failures);
    if (msg.failures.length > 0) this.stopAll();
    this.decideIfComplete();
  }

  private get range(): string {
    return `${this.opts.minNodes}:${this.opts.maxNodes}`;
  }

  private gather(): void {
    this.phase = 'gathering';
    this.clearTimers();
    this.deadline = setLongTimeout(() => this.timedOut(), this.opts.rdzvTimeoutMs);
    this.checkGathered();
  }

  private checkGathered(): void {
    const n = this.nodes.size;
    if (n >= this.opts.maxNodes) return this.startRound();
    if (n >= this.opts.minNodes) {
      this.lastCall ??= setLongTimeout(() => this.startRound(), this.opts.lastCallMs);
    } else if (this.lastCall !== undefined) {
      this.lastCall.clear();
      this.lastCall = undefined;
    }
  }

  private timedOut(): void {
    if (this.phase !== 'gathering') return;
    const n = this.nodes.size;
    if (n >= this.opts.minNodes) return this.startRound();
    const s = this.opts.rdzvTimeoutMs / 1000;
    this.end(false, [], `${n} of the ${this.opts.minNodes} nodes needed (--nnodes ${this.range}) joined within --rdzv-timeout ${s} s`, true);
  }

  private startRound(): void {
    if (this.phase !== 'gathering') return;
    this.clearTimers();
    this.members = [...this.nodes.keys()].slice(0, this.opts.maxNodes);
    const infos = this.members.map((id) => this.nodes.get(id) as NodeInfo);
    const localWorldSizes = infos.map((i) => i.localWorldSize);
    const worldSize = localWorldSizes.reduce((a, b) => a + b, 0);
    const joined = this.members.filter((id) => !this.previous.has(id)).map((id) => `node ${this.nodes.get(id)?.label} joined`);
    const lost = [...this.previous].filter(([id]) => !this.nodes.has(id)).map(([, label]) => `node ${label} lost`);
    const change =
      this.lastWorldSize === undefined || joined.length + lost.length === 0
        ? undefined
        : `world size ${this.lastWorldSize} → ${worldSize} (${[...lost, ...joined].join(', ')})`;
    this.round += 1;
    this.previous = new Map(this.members.map((id, i) => [id, infos[i]?.label ?? '?']));
    this.lastWorldSize = worldSize;
    this.lostThisRound = [];
    this.results.clear();
    this.stopping = false;
    this.phase = 'running';
    this.say(
      `round ${this.round}: nodes ${infos.map((i, r) => `${r}=${i.label}`).join(', ')}, world size ${worldSize}${change === undefined ? '' : `; ${change}`}`,
    );
    const layout = { runId: this.opts.runId, worldSize, localWorldSizes };
    this.members.forEach((id, nodeRank) =>
      this.send(id, { type: 'start', attempt: this.round, layout, nodeRank, restartCount: this.restarts, change, cause: this.cause }),
    );
    this.cause = undefined;
  }

  private cause: ProcessFailure | undefined;

  private stopAll(): void {
    if (this.stopping || this.phase !== 'running') return;
    this.stopping = true;
    for (const id of this.members) if (this.nodes.has(id)) this.send(id, { type: 'stop', attempt: this.round });
  }

  private decideIfComplete(): void {
    if (this.phase !== 'running' || !this.members.every((id) => this.results.has(id))) return;
    const failures = orderFailures([...this.results.values()].flat());
    if (this.fatal !== undefined) return this.end(false, failures, this.fatal);
    if (failures.length === 0 && !this.stopping) return this.end(true, []);
    // A lost member or failed workers spend a restart; a joining node does not.
    if (failures.length > 0 || this.lostThisRound.length > 0) {
      if (this.restarts >= this.opts.maxRestarts) {
        const why = this.lostThisRound.length > 0 ? `node(s) ${this.lostThisRound.join(', ')} lost` : undefined;
        return this.end(false, failures, why === undefined ? undefined : `${why}, and no restarts are left (--max-restarts ${this.opts.maxRestarts})`);
      }
      this.restarts += 1;
    }
    this.cause = failures[0];
    this.gather();
  }

  private end(ok: boolean, failures: readonly ProcessFailure[], reason?: string, rendezvousFailed?: boolean): void {
    this.phase = 'ended';
    this.clearTimers();
    const attempt = Math.max(this.round, 0);
    for (const id of this.nodes.keys()) this.send(id, { type: 'end', attempt, ok, failures, reason, rendezvousFailed });
  }

  private clearTimers(): void {
    this.deadline?.clear();
    this.lastCall?.clear();
    this.deadline = undefined;
    this.lastCall = undefined;
  }
}
