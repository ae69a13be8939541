/**
 * The run's single decision maker (it lives in node 0's launcher): when to stop the group, and
 * whether a finished attempt ends the run or starts the next one. All-or-nothing: one node's
 * failure stops every node, and a restart restarts every node. See launcher/protocol.ts for the
 * message flow. Pure logic over `send`, so it is tested without processes or sockets.
 */
import { orderFailures, type ProcessFailure } from './failures.js';
import type { Layout, ToCoordinator, ToNode } from './protocol.js';

export interface CoordinatorOptions {
  readonly layout: Layout;
  readonly maxRestarts: number;
}

export class Coordinator {
  private attempt = 0;
  private readonly results = new Map<number, readonly ProcessFailure[]>();
  private stopping = false;
  /** Set when the run must end whatever the restarts left: an interrupt, a lost node. */
  private fatal: string | undefined;
  private ended = false;
  private readonly nnodes: number;

  /** `send(nodeRank, msg)` delivers to a node; it must not call back synchronously. */
  constructor(
    private readonly opts: CoordinatorOptions,
    private readonly send: (nodeRank: number, msg: ToNode) => void,
  ) {
    this.nnodes = opts.layout.localWorldSizes.length;
  }

  /** Start attempt 0 on every node. */
  begin(): void {
    this.broadcast({ type: 'start', attempt: 0, layout: this.opts.layout });
  }

  get isEnded(): boolean {
    return this.ended;
  }

  receive(nodeRank: number, msg: ToCoordinator): void {
    // Messages about an earlier attempt (in flight when it ended) change nothing.
    if (this.ended || msg.attempt !== this.attempt) return;
    switch (msg.type) {
      case 'failing':
        this.stopAll();
        return;
      case 'abort':
        this.fatal ??= `the launcher of node ${nodeRank} received ${msg.signal}`;
        this.stopAll();
        return;
      case 'finished':
        this.results.set(nodeRank, msg.failures);
        if (msg.failures.length > 0) this.stopAll();
        this.decideIfComplete();
        return;
      default: {
        const never: never = msg;
        throw new Error(`unknown message ${JSON.stringify(never)}`);
      }
    }
  }

  /** Node `nodeRank` is gone (connection closed before the end): the run cannot go on. */
  lost(nodeRank: number, why: string): void {
    if (this.ended) return;
    this.fatal ??= `lost contact with the launcher of node ${nodeRank} (${why})`;
    if (!this.results.has(nodeRank)) this.results.set(nodeRank, []);
    this.stopAll();
    this.decideIfComplete();
  }

  private stopAll(): void {
    if (this.stopping) return;
    this.stopping = true;
    this.broadcast({ type: 'stop', attempt: this.attempt });
  }

  private decideIfComplete(): void {
    if (this.results.size < this.nnodes) return;
    const failures = orderFailures([...this.results.values()].flat());
    const reason = this.fatal ?? (this.stopping && failures.length === 0 ? 'the group was stopped' : undefined);
    if (failures.length === 0 && reason === undefined) {
      this.finish({ type: 'end', attempt: this.attempt, ok: true, failures: [] });
    } else if (this.fatal === undefined && this.attempt < this.opts.maxRestarts) {
      this.attempt += 1;
      this.results.clear();
      this.stopping = false;
      this.broadcast({ type: 'start', attempt: this.attempt, layout: this.opts.layout, cause: failures[0] });
    } else {
      this.finish({ type: 'end', attempt: this.attempt, ok: false, failures, reason });
    }
  }

  private finish(msg: ToNode): void {
    this.ended = true;
    this.broadcast(msg);
  }

  private broadcast(msg: ToNode): void {
    for (let node = 0; node < this.nnodes; node += 1) this.send(node, msg);
  }
}
