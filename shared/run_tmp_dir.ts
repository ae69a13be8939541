/**
 * The launcher's per-run temporary directory, <os.tmpdir()>/rosedist-XXXXXX: the workers' ipc
 * sockets ({data,control}.sock), and without --log-dir their error files. The launcher removes it
 * at the end; a launcher killed with SIGKILL cannot. So the directory names its holders in
 * `holders`, one line each: `launcher <pid> <start>` when made, `worker <pid> <start>` as the
 * launcher starts workers (start: the process's start time in clock ticks since boot, from
 * /proc/<pid>/stat, so that a reused pid does not pass for a holder). Once every holder is
 * provably gone, the directory is abandoned and is removed by whoever sees it first: an orphaned
 * worker as it exits (the last one; shared/launcher_watch.ts) or the next launcher on this host.
 * An orphaned worker that exits first appends `left <pid>` and then looks: of two workers exiting
 * at the same moment, the one that looks last sees both marks, so one of them removes the
 * directory (had each only looked, each could see the other still running).
 * A directory without a readable `holders` file is never touched: nothing proves it abandoned.
 */
import { appendFileSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { processExists } from './process_tree.js';

const PREFIX = 'rosedist-';
const HOLDERS = 'holders';

/** Start time of `pid` (clock ticks since boot, field 22 of /proc/<pid>/stat); '' where unknown. */
function startTime(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "pid (comm) ": state is field 3, so field 22 is the 20th here.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    return '';
  }
}

/** Is the process that was `pid`, started at `start`, still running (a zombie is not)? */
function running(pid: number, start: string): boolean {
  if (!processExists(pid)) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') return false;
    // Another process now has the pid: ours is gone.
    return start === '' || fields[19] === start;
  } catch {
    // No /proc here: kill(0) is all we know.
    return true;
  }
}

function line(role: 'launcher' | 'worker', pid: number): string {
  return `${role} ${pid} ${startTime(pid)}\n`;
}

/** Make this launcher's directory, naming it as its holder. */
export function makeRunTmpDir(base: string = tmpdir()): string {
  const dir = mkdtempSync(join(base, PREFIX));
  writeFileSync(join(dir, HOLDERS), line('launcher', process.pid));
  return dir;
}

/** Name started workers as holders too (they use the directory after the launcher dies). */
export function addWorkers(dir: string, pids: readonly number[]): void {
  try {
    appendFileSync(
      join(dir, HOLDERS),
      pids
        .filter((p) => p > 0)
        .map((p) => line('worker', p))
        .join(''),
    );
  } catch {
    // The directory is gone (the run ended): nothing to record.
  }
}

/** True when every holder of `dir` is provably gone (or left); false when one runs or nothing proves it. */
export function abandoned(dir: string): boolean {
  let text: string;
  try {
    text = readFileSync(join(dir, HOLDERS), 'utf8');
  } catch {
    return false;
  }
  const lines = text.split('\n').filter((l) => l !== '');
  if (lines.length === 0 || !text.endsWith('\n')) return false;
  const left = new Set<number>();
  const holders: { pid: number; start: string }[] = [];
  for (const l of lines) {
    const m = /^(launcher|worker|left) (\d+)(?: (\d*))?$/.exec(l);
    if (m === null) return false;
    if (m[1] === 'left') left.add(Number(m[2]));
    else holders.push({ pid: Number(m[2]), start: m[3] ?? '' });
  }
  return holders.every((h) => left.has(h.pid) || (h.pid !== process.pid && !running(h.pid, h.start)));
}

/** An orphaned worker's last act: say it no longer uses `dir`, then remove it if nobody does. */
export function leaveRunTmpDir(dir: string): boolean {
  try {
    // O_APPEND: a short line lands whole even when another worker appends at the same moment.
    appendFileSync(join(dir, HOLDERS), `left ${process.pid}\n`, { flag: 'a' });
  } catch {
    // Removed already (another worker was last), or never there.
    return false;
  }
  return removeIfAbandoned(dir);
}

/** Remove `dir` if it is abandoned (see `abandoned`); true if removed. Never throws. */
export function removeIfAbandoned(dir: string): boolean {
  try {
    if (!abandoned(dir)) return false;
    rmSync(dir, { recursive: true, force: true });
    return true;
  } catch {
    return false;
  }
}

/** Remove the abandoned run directories in `base` that this user owns; returns those removed. */
export function sweepAbandoned(base: string = tmpdir()): string[] {
  let names: string[];
  try {
    names = readdirSync(base).filter((n) => n.startsWith(PREFIX));
  } catch {
    return [];
  }
  const uid = process.getuid?.();
  const removed: string[] = [];
  for (const name of names) {
    const dir = join(base, name);
    try {
      const st = lstatSync(dir);
      if (!st.isDirectory() || (uid !== undefined && st.uid !== uid)) continue;
    } catch {
      continue;
    }
    if (removeIfAbandoned(dir)) removed.push(dir);
  }
  return removed;
}
