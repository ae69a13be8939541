/**
 * The run's directory under --log-dir: <log-dir>/<run-id>, or <log-dir>/<run-id>_<k> (k = 1, 2, ...)
 * when that name is taken, so that a reused --run-id never overwrites an earlier run's logs and
 * error files (torchrun also gives each run's log directory a unique suffix). mkdir is atomic:
 * two launchers starting at once with the same id get different directories.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../shared/errors.js';

/** Make and return a fresh directory for run `runId` in `logDir` (which exists). */
export function reserveRunDir(logDir: string, runId: string): string {
  for (let k = 0; ; k += 1) {
    const dir = join(logDir, k === 0 ? runId : `${runId}_${k}`);
    try {
      mkdirSync(dir);
      return dir;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') continue;
      throw new ConfigError(`cannot make the run's log directory ${dir} (${code ?? (e as Error).message})`, 'pass a --log-dir this user can write');
    }
  }
}
