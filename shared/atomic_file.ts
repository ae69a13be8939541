/**
 * Atomic file writes: the bytes go to a temporary file beside the target, which is then renamed
 * over it, so a reader (or a run resumed after a crash) sees the old file or the new one, never a
 * half-written one. On failure the temporary file is removed and the error is rethrown as it
 * came (callers wrap it in a FileError that names what the file is and how to fix it).
 */
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/** Beside the target (a rename does not cross file systems); per process, as ranks share paths. */
function tmpName(path: string): string {
  return `${path}.tmp-${process.pid}`;
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
 * rename are fsynced (file, then directory), so they also survive a power loss.
 */
export function writeFileAtomicSync(path: string, bytes: Uint8Array, durable = false): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true });
  const tmp = tmpName(path);
  try {
    const fd = openSync(tmp, 'w');
    try {
      for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at, bytes.length - at);
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
