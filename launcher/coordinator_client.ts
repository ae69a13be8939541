/**
 * The agent's side of the run's coordination: how a node learns that an attempt starts, must stop,
 * or that the run ended, and how it reports back (messages in launcher/protocol.ts).
 *
 * `NodeClient` is the one implementation the agent sees; it is wired either to an in-memory
 * Coordinator (single node: `localRendezvous`) or to a control connection (multi-node:
 * launcher/rendezvous.ts). Nothing here runs concurrently with itself: it is all callbacks
 * on Node's one thread.
 */
import { Mailbox } from '../shared/mailbox.js';
import { Coordinator } from './coordinator.js';
import type { ProcessFailure } from './failures.js';
import type { Layout, ToCoordinator, ToNode } from './protocol.js';

export type Instruction = Extract<ToNode, { type: 'start' | 'end' }>;

export interface Rendezvous {
  /** The next start or end for this node. Resolves with an end (ok: false) if contact is lost. */
  next(): Promise<Instruction>;
  /** True once the run asked this node to stop `attempt` (or contact was lost). */
  stopRequested(attempt: number): boolean;
  /** A local worker failed: stop the other nodes now, before this node's cleanup. */
  failing(attempt: number): void;
  /** This node's workers of `attempt` are all gone; `failures` is empty if they all succeeded. */
  finished(attempt: number, failures: readonly ProcessFailure[]): void;
  /** This launcher got `signal`: the run ends everywhere without restart. */
  abort(attempt: number, signal: string): void;
  /** Flush what was sent and release the connection. */
  close(): Promise<void>;
}

export class NodeClient implements Rendezvous {
  private readonly inbox = new Mailbox<Instruction>();
  private stoppedAttempt = -1;
  private lostReason: string | undefined;
  private ended = false;

  constructor(
    private readonly sendToCoordinator: (msg: ToCoordinator) => void,
    private readonly closer: () => Promise<void> = async () => {},
  ) {}

  /** A message from the coordinator. */
  deliver(msg: ToNode): void {
    if (msg.type === 'stop') {
      this.stoppedAttempt = Math.max(this.stoppedAttempt, msg.attempt);
      return;
    }
    if (msg.type === 'end') this.ended = true;
    this.inbox.put(msg);
  }

  /** Contact with the coordinator is gone; harmless after the end. */
  lostContact(why: string): void {
    if (this.ended || this.lostReason !== undefined) return;
    this.lostReason = why;
    this.inbox.put({ type: 'end', attempt: -1, ok: false, failures: [], reason: why });
  }

  next(): Promise<Instruction> {
    return this.inbox.take();
  }

  stopRequested(attempt: number): boolean {
    return this.lostReason !== undefined || this.stoppedAttempt >= attempt;
  }

  failing(attempt: number): void {
    this.sendToCoordinator({ type: 'failing', attempt });
  }

  finished(attempt: number, failures: readonly ProcessFailure[]): void {
    this.sendToCoordinator({ type: 'finished', attempt, failures });
  }

  abort(attempt: number, signal: string): void {
    this.sendToCoordinator({ type: 'abort', attempt, signal });
  }

  close(): Promise<void> {
    return this.closer();
  }
}

/** A single-node run: the coordinator in this process, messages passed on the next tick. */
export function localRendezvous(layout: Layout, maxRestarts: number): Rendezvous {
  const coordinator = new Coordinator({ layout, maxRestarts }, (_node, msg) => queueMicrotask(() => client.deliver(msg)));
  const client: NodeClient = new NodeClient((msg) => queueMicrotask(() => coordinator.receive(0, msg)));
  coordinator.begin();
  return client;
}
