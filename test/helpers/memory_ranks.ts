/** Run a function on every rank of an in-memory world (worker/comm/memory_group.ts) at once. */
import { createMemoryGroups } from '../../worker/comm/memory_group.js';
import type { ProcessGroup } from '../../worker/comm/process_group.js';

/** Run `fn` on every rank of a world of `worldSize`; rejects with the first rank's error. */
export async function onRanks<T>(worldSize: number, fn: (pg: ProcessGroup) => Promise<T>): Promise<T[]> {
  return unwrap(await settle(worldSize, fn));
}

/** Settle every rank, then report each outcome (so one rank's rejection does not hide the others). */
export async function settle<T>(worldSize: number, fn: (pg: ProcessGroup) => Promise<T>): Promise<PromiseSettledResult<T>[]> {
  const groups = createMemoryGroups(worldSize, { collectiveTimeoutMs: 5000 });
  try {
    return await Promise.allSettled(groups.map(fn));
  } finally {
    await Promise.all(groups.map((g) => g.close()));
  }
}

function unwrap<T>(results: PromiseSettledResult<T>[]): T[] {
  return results.map((r) => {
    if (r.status === 'rejected') throw r.reason;
    return r.value;
  });
}
