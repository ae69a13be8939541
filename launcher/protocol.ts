/**
 * Messages between a node's agent and the run's coordinator (launcher/coordinator.ts). On one node
 * they stay in memory; across nodes they travel as signed JSON lines (launcher/rendezvous.ts).
 *
 * One attempt, seen from the coordinator:
 *   start(n) → every node starts its workers
 *   a node whose worker fails sends failing(n) at once → the coordinator sends stop(n) to all
 *   every node, once its workers are gone, sends finished(n, its failures)
 *   all finished → start(n + 1) (failures, restarts left) or end(ok | failures)
 * abort(n, signal): a launcher was interrupted; the others stop and the run ends without restart.
 */
import type { ProcessFailure } from './failures.js';

/** What the nodes agreed on: the same for every node of a run. */
export interface Layout {
  readonly runId: string;
  readonly worldSize: number;
  /** Workers per node, indexed by node rank. */
  readonly localWorldSizes: readonly number[];
}

export type ToNode =
  | {
      readonly type: 'start';
      readonly attempt: number;
      readonly layout: Layout;
      /** Why the previous attempt ended (attempt > 0): its first failure. */
      readonly cause?: ProcessFailure | undefined;
      /** Elastic runs: this node's rank in this round (else the node's --node-rank). */
      readonly nodeRank?: number | undefined;
      /** Elastic runs: restarts counted against --max-restarts so far (else `attempt`). */
      readonly restartCount?: number | undefined;
      /** Elastic runs: what changed since the last round, e.g. "world size 4 → 2 (node n3 lost)". */
      readonly change?: string | undefined;
    }
  | { readonly type: 'stop'; readonly attempt: number }
  | {
      readonly type: 'end';
      readonly attempt: number;
      readonly ok: boolean;
      readonly failures: readonly ProcessFailure[];
      /** A failure that is not a worker's (a lost node, an interrupted launcher). */
      readonly reason?: string | undefined;
      /** The rendezvous itself failed (too few nodes): `reason` is the whole story, one line. */
      readonly rendezvousFailed?: boolean | undefined;
    };

export type ToCoordinator =
  | { readonly type: 'failing'; readonly attempt: number }
  | { readonly type: 'finished'; readonly attempt: number; readonly failures: readonly ProcessFailure[] }
  | { readonly type: 'abort'; readonly attempt: number; readonly signal: string };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isFailureList(v: unknown): v is ProcessFailure[] {
  return Array.isArray(v) && v.every((f) => isObject(f) && typeof f.rank === 'number' && typeof f.time === 'number');
}

/** Check the shape of a message from a node; undefined when it is not one. */
export function asToCoordinator(v: unknown): ToCoordinator | undefined {
  if (!isObject(v) || typeof v.attempt !== 'number') return undefined;
  switch (v.type) {
    case 'failing':
      return { type: 'failing', attempt: v.attempt };
    case 'finished':
      return isFailureList(v.failures) ? { type: 'finished', attempt: v.attempt, failures: v.failures } : undefined;
    case 'abort':
      return typeof v.signal === 'string' ? { type: 'abort', attempt: v.attempt, signal: v.signal } : undefined;
    default:
      return undefined;
  }
}

/** Check the shape of a message from the coordinator; undefined when it is not one. */
export function asToNode(v: unknown): ToNode | undefined {
  if (!isObject(v) || typeof v.attempt !== 'number') return undefined;
  switch (v.type) {
    case 'start': {
      const l = v.layout;
      const ok = isObject(l) && typeof l.runId === 'string' && typeof l.worldSize === 'number' && Array.isArray(l.localWorldSizes);
      return ok ? (v as unknown as ToNode) : undefined;
    }
    case 'stop':
      return { type: 'stop', attempt: v.attempt };
    case 'end':
      return typeof v.ok === 'boolean' && isFailureList(v.failures) ? (v as unknown as ToNode) : undefined;
    default:
      return undefined;
  }
}
