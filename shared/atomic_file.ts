/**
 * Atomic file writes: the bytes go to a temporary file beside the target, which is then renamed
 * over it, so a reader (or a run resumed after a crash) sees the old file or the new one, never a
 * half-written one. On failure the temporary file is removed and the error is rethrown as it
 * came (callers wrap it in a FileError that names what the file is and how to fix it).
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { processExists } from './process_tree.js';

/** Beside the target (a rename does not cross file systems); per process, as ranks share paths. */
function tmpName(path: string): string {
  return `${path}.tmp-${process.pid}`;
}

/**
 * Remove the temporary files of `path` left by processes that no longer exist on this host (a
 * writer killed by SIGKILL or a power loss before its rename); returns the paths removed. Files of
 * live processes are kept: they may be writing now. Errors (an unreadable directory) remove nothing.
 */
export function removeStaleTempFiles(path: string): string[] {
  const prefix = `${basename(path)}.tmp-`;
  let names: string[];
  try {
    names = readdirSync(dirname(path));
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const pid = name.startsWith(prefix) ? name.slice(prefix.length) : '';
    if (!/^[1-9]\d{0,9}$/.test(pid) || Number(pid) === process.pid || processExists(Number(pid))) continue;
    const stale = join(dirname(path), name);
    removeQuietly(() => {
      rmSync(stale, { force: true });
      removed.push(stale);
    });
  }
  return removed;
}

/** The temporary file may be unremovable for the same reason the write failed (a name too long):
 * the write's error is the one worth reporting. */
function removeQuietly(remove: () => void): void {
  try {
    remove();
  } catch {
    // see above
  }
}

/**
 * Write `bytes` to `path` atomically, creating its directory. With `durable` the data and the
 * rename are fsynced (file, then directory), so they also survive a power loss. `midWrite` runs
 * when half the bytes are written (a test hook: a fault in the middle of a write).
 */
export function writeFileAtomicSync(path: string, bytes: Uint8Array, durable = false, midWrite?: () => void): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true });
  const tmp = tmpName(path);
  try {
    const fd = openSync(tmp, 'w');
    try {
      const half = midWrite === undefined ? bytes.length : Math.floor(bytes.length / 2);
      for (let at = 0; at < half;) at += writeSync(fd, bytes, at, half - at);
      midWrite?.();
      for (let at = half; at < bytes.length;) at += writeSync(fd, bytes, at, bytes.length - at);
      if (durable) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    removeQuietly(() => rmSync(tmp, { force: true }));
    throw e;
  }
  if (durable) {
    const dfd = openSync(dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  }
}
