/**
 * Signals deferred around a synchronous piece of work (a checkpoint write), so that SIGINT,
 * SIGTERM or SIGHUP cannot kill the process halfway and leave a temporary file behind.
 *
 * Node runs no JavaScript while synchronous work runs: with a listener installed, libuv's handler
 * only notes the signal (in its pipe) and the work goes on to the end. One turn of the event loop
 * afterwards delivers it to the listener; the listeners are then removed (restoring the default
 * action) and the first signal is raised again, so the process ends as it would have, by that
 * signal — only later, with the file complete. SIGKILL cannot be deferred: the stale temporary
 * files it leaves are removed at the next start (checkpoint.ts).
 */
const DEFERRED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const satisfies readonly NodeJS.Signals[];

export async function withSignalsDeferred<T>(work: () => T): Promise<T> {
  const caught: NodeJS.Signals[] = [];
  const onSignal = (signal: NodeJS.Signals): void => {
    caught.push(signal);
  };
  for (const s of DEFERRED) process.on(s, onSignal);
  try {
    return work();
  } finally {
    // setImmediate runs after the loop's poll phase, where the noted signals are delivered.
    await new Promise<void>((resolve) => setImmediate(resolve));
    for (const s of DEFERRED) process.off(s, onSignal);
    const first = caught[0];
    if (first !== undefined) process.kill(process.pid, first);
  }
}
