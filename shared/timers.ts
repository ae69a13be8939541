/**
 * Timers of any length. Node's setTimeout holds a signed 32-bit delay (at most 2^31 - 1 ms, about
 * 24.8 days); a longer one fires after 1 ms with a TimeoutOverflowWarning, so `--join-timeout
 * 10000000` (115 days, a user's "never") would fire at once. Here:
 *   - a delay of Infinity never fires (the convention for "no timeout");
 *   - a finite delay above the limit is chained from timers of at most the limit, so it fires
 *     when it says (with no warning);
 *   - NaN or a negative delay fires as soon as possible, as setTimeout does.
 * Both the launcher and the workers use this module; it imports nothing.
 */

/** The longest delay one setTimeout can hold, ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Seconds as a user gives them → ms, 0 and Infinity meaning "no timeout" (Infinity). */
export function timeoutMs(seconds: number): number {
  return seconds === 0 || seconds === Infinity ? Infinity : seconds * 1000;
}

/** "inf", "infinity" or "never" (any case) → Infinity; anything else → Number(text). */
export function parseSeconds(text: string): number {
  return /^\s*(inf|infinity|never)\s*$/i.test(text) ? Infinity : text.trim() === '' ? NaN : Number(text);
}

/** A started one-shot timer. */
export interface LongTimer {
  /** Cancel it; harmless after it fired. */
  clear(): void;
  /** Let the process exit while only this timer is pending (like Timeout.unref). */
  unref(): LongTimer;
}

/** Call `fn` once after `ms` (any length; Infinity: never). */
export function setLongTimeout(fn: () => void, ms: number): LongTimer {
  let handle: NodeJS.Timeout | undefined;
  let refed = true;
  let cleared = false;
  const due = Date.now() + ms;
  const arm = (left: number): void => {
    handle = setTimeout(
      () => {
        const remaining = due - Date.now();
        if (remaining > 0 && left > MAX_TIMER_MS) arm(remaining);
        else fn();
      },
      Math.max(0, Math.min(left, MAX_TIMER_MS)) || 0,
    );
    if (!refed) handle.unref();
  };
  if (ms !== Infinity) arm(ms);
  const timer: LongTimer = {
    clear() {
      cleared = true;
      if (handle !== undefined) clearTimeout(handle);
    },
    unref() {
      refed = false;
      if (!cleared) handle?.unref();
      return timer;
    },
  };
  return timer;
}

/**
 * Resolve after `ms` (any length; Infinity: only when aborted). With `signal`, resolves early when
 * it aborts (no rejection: the caller looks at the signal) and leaves no listener behind either way.
 * `ref: false`: does not keep the process alive.
 */
export function sleep(ms: number, opts: { readonly signal?: AbortSignal; readonly ref?: boolean } = {}): Promise<void> {
  const { signal, ref = true } = opts;
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = (): void => {
      timer.clear();
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setLongTimeout(done, ms);
    if (!ref) timer.unref();
    signal?.addEventListener('abort', done, { once: true });
  });
}
