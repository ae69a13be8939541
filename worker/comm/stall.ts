/**
 * What a rank says about itself when a peer's collective times out, and the error message built
 * from those answers: it names the collective (op and sequence number) and every rank that did
 * not take part, with the reason as far as it can be known.
 */
import { describe, type Signature } from './frames.js';

/** A rank's answer to a probe. */
export interface RankStatus {
  readonly rank: number;
  /** Sequence number of its latest collective (0: none yet). */
  readonly seq: number;
  /** Its latest collective, e.g. "#7 allReduce(sum, float32[10])", or "none". */
  readonly collective: string;
  readonly state: 'idle' | 'running' | 'failed' | 'closed';
  /** Its error, when state is 'failed'. */
  readonly error?: string | undefined;
}

export function isRankStatus(x: unknown): x is RankStatus {
  const s = x as Partial<RankStatus> | null;
  return (
    typeof s === 'object' &&
    s !== null &&
    Number.isInteger(s.rank) &&
    Number.isInteger(s.seq) &&
    typeof s.collective === 'string' &&
    (s.state === 'idle' || s.state === 'running' || s.state === 'failed' || s.state === 'closed') &&
    (s.error === undefined || typeof s.error === 'string')
  );
}

/** Why `status` (or its absence) means the rank did not take part in `sig`; undefined: it did. */
function absence(sig: Signature, status: RankStatus | undefined): string | undefined {
  if (status === undefined) return 'no answer: stopped, stuck in a long computation, dead or unreachable';
  if (status.state === 'failed') return `failed: ${status.error ?? 'unknown error'}`;
  if (status.seq < sig.seq) {
    if (status.state === 'closed') return `closed its process group after ${status.collective}`;
    const when = status.state === 'running' ? 'still running' : 'finished';
    return `has not called it; its latest collective is ${status.collective}, ${when}`;
  }
  return undefined;
}

/**
 * The CommError text for `sig` stalled on `self` (`what`: "timed out after 300 s", "stalled after
 * its connection from rank 2 closed"), given the peers' answers; `missing`: how many ranks did
 * not take part. A rank that closed its group after finishing `sig` took part. `hostOf` names a
 * rank's host ("10.77.0.12, node n2/1"), so that a dead link or host is found from any rank's error.
 */
export function describeStall(
  sig: Signature,
  self: number,
  worldSize: number,
  what: string,
  statuses: ReadonlyMap<number, RankStatus>,
  hostOf?: (rank: number) => string | undefined,
): { message: string; hint: string; missing: number } {
  const missing: string[] = [];
  for (let r = 0; r < worldSize; r++) {
    if (r === self) continue;
    const why = absence(sig, statuses.get(r));
    const host = hostOf?.(r);
    if (why !== undefined) missing.push(`${r}${host === undefined ? '' : ` on ${host}`} (${why})`);
  }
  const head = `${describe(sig)} on rank ${self} ${what}`;
  if (missing.length === 0) {
    return {
      message: `${head}; every rank answered and is in it: the ring stalled (a connection between ranks may be broken)`,
      hint: 'check the network between the ranks; raise the collective timeout if they are only slow',
      missing: 0,
    };
  }
  return {
    message: `${head}; ranks that did not take part: ${missing.join(', ')}`,
    hint: 'see the log of the ranks named; raise the collective timeout (--collective-timeout) if they are only slow',
    missing: missing.length,
  };
}
