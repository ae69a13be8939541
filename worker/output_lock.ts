/**
 * One run at a time on a set of output files. Two runs writing the same checkpoint or log would
 * overwrite each other's checkpoint and interleave their logs, so rank 0 takes a lock file beside
 * each (`<path>.lock`, created exclusively) before it writes anything, and removes it at the end.
 *
 * The lock file holds JSON {pid, host, runId, since}. A second run finds it and stops with one line
 * naming the holder. A lock left by a run that died without removing it (SIGKILL, power loss) is
 * stale: if its host is this host and its pid is not alive, the next run takes it over (and says
 * so, unless it was an earlier attempt of the same run, restarted by the launcher). A lock of
 * another host cannot be checked from here: the message says to delete it by hand if that run is
 * gone. SIGINT, SIGTERM and SIGHUP (Ctrl-C, the launcher stopping its workers) remove the locks
 * before the process ends by that signal, so only SIGKILL and crashes leave stale ones. (The take-over is remove-then-create; two runs taking over the same stale lock
 * in the same instant may both succeed — a window of microseconds that we accept.)
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { ConfigError } from '../shared/errors.js';
import { processExists } from '../shared/process_tree.js';

export interface LockHolder {
  readonly pid: number;
  readonly host: string;
  readonly runId: string;
  /** ISO time the lock was taken. */
  readonly since: string;
}

function readHolder(lockPath: string): LockHolder | undefined | 'gone' {
  let text: string;
  try {
    text = readFileSync(lockPath, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
    throw e;
  }
  try {
    const v = JSON.parse(text) as Partial<LockHolder>;
    if (typeof v.pid === 'number' && typeof v.host === 'string' && typeof v.runId === 'string' && typeof v.since === 'string') return v as LockHolder;
  } catch {
    // fall through: not ours, or written half (the writer died between create and write)
  }
  return undefined;
}

function describeHolder(h: LockHolder): string {
  return `run ${h.runId} (pid ${h.pid} on ${h.host}, since ${h.since})`;
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** Locks held by this process; release() removes them (idempotent). */
export class OutputLock {
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.release();
    // Die by the signal, as without us, unless someone else handles it (they decide how to end).
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };

  private constructor(
    readonly files: readonly string[],
    private readonly holder: LockHolder,
  ) {
    for (const s of SIGNALS) process.once(s, this.onSignal);
  }

  /**
   * Lock every path of `paths` (`<path>.lock`), all or none. `flags[i]` names paths[i] in messages.
   * Throws a ConfigError naming the holder when another live run holds one. `warn` hears about
   * stale locks taken over.
   */
  static acquire(paths: readonly { flag: string; path: string }[], runId: string, warn: (line: string) => void): OutputLock {
    const me: LockHolder = { pid: process.pid, host: hostname(), runId, since: new Date().toISOString() };
    const taken: string[] = [];
    try {
      for (const { flag, path } of paths) {
        const lockPath = `${path}.lock`;
        if (taken.includes(lockPath)) continue;
        takeOne(lockPath, flag, path, me, warn);
        taken.push(lockPath);
      }
    } catch (e) {
      for (const f of taken) rmSync(f, { force: true });
      throw e;
    }
    return new OutputLock(taken, me);
  }

  /** Remove the lock files that are still ours. */
  release(): void {
    for (const s of SIGNALS) process.removeListener(s, this.onSignal);
    for (const f of this.files) {
      const h = readHolder(f);
      if (h !== 'gone' && h !== undefined && h.pid === this.holder.pid && h.host === this.holder.host) rmSync(f, { force: true });
    }
  }
}

function takeOne(lockPath: string, flag: string, path: string, me: LockHolder, warn: (line: string) => void): void {
  try {
    mkdirSync(dirname(lockPath), { recursive: true });
  } catch (e) {
    throw new ConfigError(`cannot create the directory of ${flag} ${path}: ${(e as Error).message}`, `pick a ${flag} in a directory you may write to`);
  }
  // A few rounds: a holder may release (or another run take over) between our looks.
  for (let attempt = 0; attempt < 5; attempt++) {
    let fd: number;
    try {
      fd = openSync(lockPath, 'wx');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST')
        throw new ConfigError(
          `cannot create the lock file ${lockPath} for ${flag} ${path} (${code ?? String(e)})`,
          `pick a ${flag} in a directory you may write to`,
        );
      const h = readHolder(lockPath);
      if (h === 'gone') continue;
      if (h === undefined) {
        throw new ConfigError(
          `${flag} ${path} is locked by ${lockPath}, which is not a rosedist lock file or is damaged`,
          `if no other run uses ${path}, delete ${lockPath}`,
        );
      }
      if (h.host !== me.host) {
        throw new ConfigError(
          `${flag} ${path} is in use by ${describeHolder(h)}`,
          `wait for that run, or pick another ${flag}; if that run is gone, delete ${lockPath}`,
        );
      }
      if (processExists(h.pid) && h.pid !== me.pid) {
        throw new ConfigError(`${flag} ${path} is in use by ${describeHolder(h)}`, `wait for that run to end, or pick another ${flag}`);
      }
      // An earlier attempt of this run (the launcher restarted the group) is expected: no warning.
      if (h.runId !== me.runId) warn(`${flag} ${path}: taking over the stale lock of ${describeHolder(h)}, which is no longer running`);
      rmSync(lockPath, { force: true });
      continue;
    }
    try {
      writeSync(fd, `${JSON.stringify(me)}\n`);
    } finally {
      closeSync(fd);
    }
    return;
  }
  throw new ConfigError(`${flag} ${path}: could not take ${lockPath} (it kept changing hands)`, `another run is starting on ${path}; pick another ${flag}`);
}
