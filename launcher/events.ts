/**
 * What the launcher itself says, as a typed union with one formatter per kind (zx's pattern): a new
 * kind of event does not compile until it has its line. Lines go to stderr with a `[rosedist]` tag,
 * so they never mix with a worker's stdout (which is often data).
 */
import { describeExit, type ProcessFailure } from './failures.js';

export type LauncherEvent =
  | {
      readonly kind: 'starting';
      readonly runId: string;
      readonly attempt: number;
      readonly nodeRank: number;
      readonly ranks: readonly [number, number];
      readonly worldSize: number;
      readonly masterAddr: string;
      readonly masterPort: number;
      /** The run's log directory (--log-dir); undefined: none. */
      readonly logs: string | undefined;
    }
  | {
      readonly kind: 'restarting';
      readonly attempt: number;
      readonly maxRestarts: number;
      readonly cause: ProcessFailure | undefined;
      readonly reason: string | undefined;
    }
  | { readonly kind: 'worker_failed'; readonly failure: ProcessFailure }
  | { readonly kind: 'stopping'; readonly ranks: readonly number[]; readonly signal: NodeJS.Signals; readonly graceMs: number }
  | { readonly kind: 'leftovers'; readonly ranks: readonly number[]; readonly signal: NodeJS.Signals; readonly graceMs: number }
  | { readonly kind: 'killing'; readonly ranks: readonly number[] }
  | { readonly kind: 'interrupted'; readonly signal: NodeJS.Signals }
  | { readonly kind: 'waiting_for_nodes'; readonly joined: number; readonly nnodes: number; readonly address: string }
  | { readonly kind: 'node_joined'; readonly nodeRank: number; readonly from: string }
  | { readonly kind: 'rejected_connection'; readonly from: string; readonly reason: string }
  | { readonly kind: 'membership'; readonly text: string }
  | { readonly kind: 'rendezvous_failed'; readonly reason: string }
  | { readonly kind: 'succeeded'; readonly runId: string; readonly attempt: number }
  | { readonly kind: 'summary'; readonly text: string };

type Formatters = { readonly [K in LauncherEvent['kind']]: (e: Extract<LauncherEvent, { kind: K }>) => string };

const formatters: Formatters = {
  starting: (e) =>
    `run ${e.runId} attempt ${e.attempt}: node ${e.nodeRank} starts ranks ${e.ranks[0]}..${e.ranks[1]} of ${e.worldSize}` +
    ` (master ${e.masterAddr}:${e.masterPort})` +
    (e.logs === undefined ? '' : `, logs in ${e.logs}`),
  restarting: (e) => {
    const why = e.cause
      ? `rank ${e.cause.rank} (local rank ${e.cause.localRank}, node ${e.cause.nodeRank}) ${describeExit(e.cause)}`
      : (e.reason ?? 'the group stopped');
    return `${why}; restarting the group (restart ${e.attempt} of ${e.maxRestarts})`;
  },
  worker_failed: (e) =>
    `rank ${e.failure.rank} (local rank ${e.failure.localRank}, node ${e.failure.nodeRank}, pid ${e.failure.pid}) ${describeExit(e.failure)}` +
    (e.failure.message === undefined ? '' : `: ${e.failure.message}`),
  stopping: (e) => `sending ${e.signal} to ranks ${e.ranks.join(', ')} (SIGKILL after ${e.graceMs / 1000} s)`,
  leftovers: (e) => `ranks ${e.ranks.join(', ')} exited, but processes they started still run: sending them ${e.signal} (SIGKILL after ${e.graceMs / 1000} s)`,
  killing: (e) => `ranks ${e.ranks.join(', ')} still running after the grace period: SIGKILL`,
  interrupted: (e) => `received ${e.signal}: forwarding it to the workers`,
  waiting_for_nodes: (e) => `node 0 listens on ${e.address}: ${e.joined} of ${e.nnodes} nodes joined`,
  node_joined: (e) => `node ${e.nodeRank} joined from ${e.from}`,
  rejected_connection: (e) => `rejected a control connection from ${e.from}: ${e.reason}`,
  membership: (e) => e.text,
  rendezvous_failed: (e) => `rendezvous failed: ${e.reason}`,
  succeeded: (e) => `run ${e.runId} succeeded on attempt ${e.attempt}`,
  summary: (e) => e.text,
};

export function formatEvent(e: LauncherEvent): string {
  // The cast is the one place TypeScript cannot follow the kind → formatter correlation.
  const format = formatters[e.kind] as (e: LauncherEvent) => string;
  return format(e)
    .split('\n')
    .map((line) => `[rosedist] ${line}`)
    .join('\n');
}

/** Where events go; the default writes them to stderr. Tests pass a collector. */
export type EventSink = (e: LauncherEvent) => void;

export const stderrSink: EventSink = (e) => {
  process.stderr.write(`${formatEvent(e)}\n`);
};
