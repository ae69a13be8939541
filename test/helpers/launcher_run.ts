/**
 * Run `bin/rosedist.mjs` as a real process for the launcher's integration tests, and look at
 * what it leaves behind (worker files, live pids).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProcess, type RunningProcess } from '../../shared/subprocess.js';

export const BIN = fileURLToPath(new URL('../../bin/rosedist.mjs', import.meta.url));
export const FIXTURE = fileURLToPath(new URL('../fixtures/launcher_worker.ts', import.meta.url));

/** Short grace periods keep failure tests quick. */
export const TEST_ENV = { ROSEDIST_STOP_GRACE_S: '1' };

/** A launcher run in progress: its process, its output so far, and its end. */
export type Launch = RunningProcess;

export function startLauncher(args: readonly string[], env: Record<string, string> = {}): Launch {
  return startProcess(process.execPath, [BIN, ...args], { env: { ...TEST_ENV, ...env } });
}

export function runLauncher(args: readonly string[], env: Record<string, string> = {}) {
  return startLauncher(args, env).done;
}

export { tempDir } from './temp_dir.js';

export interface WorkerRecord {
  readonly pid: number;
  readonly ppid: number;
  readonly argv: string[];
  readonly env: Record<string, string>;
  readonly contract: Record<string, unknown>;
}

/** The fixture's records in `dir`, by file name (attempt_<n>_rank_<r>.json). */
export function workerRecords(dir: string): Map<string, WorkerRecord> {
  const records = new Map<string, WorkerRecord>();
  for (const name of readdirSync(dir)
    .filter((n) => n.endsWith('.json'))
    .sort()) {
    records.set(name.replace(/\.json$/, ''), JSON.parse(readFileSync(join(dir, name), 'utf8')) as WorkerRecord);
  }
  return records;
}

/** Is `pid` a live process? A zombie (exited, not yet reaped) counts as gone. */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    try {
      statSync('/proc/self');
      return false;
    } catch {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    }
  }
}

/**
 * Poll `condition` every 100 ms until it holds; throws naming `what` after `limitMs`. The limit
 * bounds a hang (e.g. an orphan that never exits), it does not measure speed.
 */
export async function waitFor(what: string, condition: () => boolean, limitMs = 20_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The launcher's own lines, without worker output. */
export function launcherLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.startsWith('[rosedist]') || l.startsWith('rosedist:'));
}
