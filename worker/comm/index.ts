/**
 * The process group a worker creates from its environment:
 *
 *   const pg = await initProcessGroup(readWorkerEnv());
 *   await pg.allReduce(grads, 'mean');
 *   await pg.close();
 *
 * A world of one gets a SingleProcessGroup (no sockets); larger worlds the ZeroMQ ring
 * (zmq/zmq_group.ts). Rejects with a CommError when the rendezvous fails (naming the missing ranks
 * and the address waited on) or a socket cannot be bound.
 */
import type { WorkerEnv } from '../../shared/env.js';
import { ConfigError } from '../../shared/errors.js';
import { rankTag } from '../../shared/logging.js';
import { SingleProcessGroup, type ProcessGroup } from './process_group.js';
import type { ReducerKind } from './reduce.js';
import type { AllReduceAlgorithm } from './ring_group_options.js';
import { createZmqGroup, type DataTransportKind } from './zmq/zmq_group.js';

export type { FloatArray, NumericArray, ProcessGroup, ReduceOp } from './process_group.js';
export { broadcastJson, SingleProcessGroup } from './process_group.js';
export { shardRange } from './chunks.js';
export type { AllReduceAlgorithm } from './ring_group_options.js';
export type { DataTransportKind } from './zmq/zmq_group.js';

export interface ProcessGroupOptions {
  /** How long the ranks wait for each other at start (ms); default 60 s. */
  rendezvousTimeoutMs?: number;
  /** How long one collective may wait for the others (ms; Infinity: no limit); default 300 s (--collective-timeout). */
  collectiveTimeoutMs?: number;
  /** Ring segment size (bytes); default 1 MiB. */
  segmentBytes?: number;
  /** All-reduces moving at most this many bytes per rank as an all-gather take that lower-latency path (bytes); default 64 KiB, 0: never. */
  gatherBytes?: number;
  /** Force one all-reduce algorithm ('ring' or 'gather'; see ring_group_options.ts); default 'auto': by size. */
  allReduceAlgorithm?: AllReduceAlgorithm | 'auto';
  /**
   * Which sockets carry the ring's data: 'zmq' (default) or 'stream' (kernel sockets read into
   * reused memory, net/); unset: ROSEDIST_DATA_TRANSPORT, else 'zmq'.
   */
  dataTransport?: DataTransportKind;
  /** Reduction kernels: 'wasm' (default where available) or 'js' (for benchmarks). */
  reducer?: ReducerKind;
  /** Where warnings go (refused connections, dropped frames); default: stderr, marked with the rank. */
  warn?: (message: string) => void;
}

export const DEFAULT_RENDEZVOUS_TIMEOUT_MS = 60_000;

/** `value` checked; undefined stays undefined (the ring group's own default applies: ring_group_options.ts). With `infinite`, Infinity passes (no limit). */
function positive(name: string, value: number | undefined, infinite = false): number | undefined {
  if (value === undefined) return undefined;
  if (infinite && value === Infinity) return value;
  if (!Number.isFinite(value) || value <= 0) throw new ConfigError(`process group option ${name}=${value} is not a positive number`, `pass ${name} > 0`);
  return value;
}

function stderrWarn(rank: number): (message: string) => void {
  const tag = rankTag(rank);
  return (message) => process.stderr.write(`${tag}WARN: ${message}\n`);
}

/** ROSEDIST_DATA_TRANSPORT (a diagnostic knob: compare the ring's data sockets in real runs). */
function dataTransportFromEnv(value: string | undefined): DataTransportKind | undefined {
  if (value === undefined || value === '') return undefined;
  if (value === 'stream' || value === 'zmq') return value;
  throw new ConfigError(`ROSEDIST_DATA_TRANSPORT=${value} is not a data transport`, 'set it to stream or zmq, or unset it');
}

export async function initProcessGroup(env: WorkerEnv, opts?: ProcessGroupOptions): Promise<ProcessGroup> {
  const o = opts ?? {};
  const resolved = {
    rendezvousTimeoutMs: positive('rendezvousTimeoutMs', o.rendezvousTimeoutMs) ?? DEFAULT_RENDEZVOUS_TIMEOUT_MS,
    collectiveTimeoutMs: positive('collectiveTimeoutMs', o.collectiveTimeoutMs, true),
    segmentBytes: positive('segmentBytes', o.segmentBytes),
    warn: o.warn ?? stderrWarn(env.rank),
    reducer: o.reducer,
    gatherBytes: o.gatherBytes === 0 ? 0 : positive('gatherBytes', o.gatherBytes),
    allReduceAlgorithm: o.allReduceAlgorithm,
    dataTransport: o.dataTransport ?? dataTransportFromEnv(process.env.ROSEDIST_DATA_TRANSPORT),
  };
  if (env.worldSize === 1) return new SingleProcessGroup();
  return createZmqGroup(env, resolved);
}
