/**
 * Signals deferred around a synchronous piece of work (a checkpoint write), so that SIGINT,
 * SIGTERM or SIGHUP cannot kill the process halfway and leave a temporary file behind.
 *
 * Node runs no JavaScript while synchronous work runs: with a listener installed, libuv's handler
 * only notes the signal (in its signal pipe) and the work goes on to the end. Afterwards the
 * process sends itself a sentinel, SIGURG (ignored by default, used by nothing here): libuv reads
 * its pipe in order, so once the sentinel's listener runs, every signal noted before it has
 * reached ours. (One event-loop turn is not enough: measured, a signal raised during the work
 * often arrives a few turns later.) The listeners are then removed, which restores the default
 * action, and the first signal is raised again: the process ends as it would have, by that signal,
 * only later, with the file complete. SIGKILL cannot be deferred: the stale temporary files it
 * leaves are removed at the next start (checkpoint.ts).
 */
const DEFERRED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const satisfies readonly NodeJS.Signals[];
const SENTINEL: NodeJS.Signals = 'SIGURG';
/** A fallback only: the sentinel takes microseconds. The timer also keeps the loop alive (signal handles do not). */
const SENTINEL_WAIT_MS = 1000;

/** Resolves once every signal sent to this process before the call has reached its listeners. */
function signalsDelivered(): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, SENTINEL_WAIT_MS);
    process.once(SENTINEL, () => {
      clearTimeout(timer);
      resolve();
    });
    process.kill(process.pid, SENTINEL);
  });
}

export async function withSignalsDeferred<T>(work: () => T): Promise<T> {
  const caught: NodeJS.Signals[] = [];
  const onSignal = (signal: NodeJS.Signals): void => {
    caught.push(signal);
  };
  for (const s of DEFERRED) process.on(s, onSignal);
  try {
    return work();
  } finally {
    await signalsDelivered();
    for (const s of DEFERRED) process.off(s, onSignal);
    const first = caught[0];
    if (first !== undefined) process.kill(process.pid, first);
  }
}
