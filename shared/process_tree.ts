/**
 * A worker's process tree: the worker and every process it starts. The launcher starts each
 * worker in a session of its own (spawn's `detached`, i.e. setsid), so the worker leads a POSIX
 * process group that its children join unless they leave it on purpose; signalling the group
 * (kill(-pgid)) reaches them all, as torchrun does (start_new_session + os.killpg). The group
 * outlives its leader: children of a worker that exited are still reached through it.
 * Used by the launcher (stopping workers) and by the workers (shared/launcher_watch.ts); processExists
 * by whatever asks whether a recorded pid is still there (locks, temporary files).
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Whether process `pid` exists on this host (kill(pid, 0); EPERM: it does, as another user's). Zombies count. */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Send `signal` to every process of the tree led by `pid`; false when none is left. */
export function signalTree(pid: number, signal: NodeJS.Signals | 0): boolean {
  // kill(-0) would signal the launcher's own group: a pid of 0 (spawn failed) leads nothing.
  if (!(pid > 0)) return false;
  try {
    process.kill(-pid, signal);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Does any process of the tree led by `pid` still run? Zombies (exited, waiting to be reaped) do not count. */
export function treeAlive(pid: number): boolean {
  if (!signalTree(pid, 0)) return false;
  // kill(2) also finds zombies (an orphaned child whose reaper is slow); /proc tells them apart.
  const members = treeMembers(pid);
  return members === undefined || members.length > 0;
}

/** The live (not zombie) processes of the tree led by `pid`; undefined where there is no /proc to ask. */
export function treeMembers(pid: number): number[] | undefined {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return undefined;
  }
  const members: number[] = [];
  for (const name of entries) {
    if (name.charCodeAt(0) > 57) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue;
    }
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so split after the last ')'.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ', 3);
    if (Number(pgrp) === pid && state !== 'Z' && state !== 'X') members.push(Number(name));
  }
  return members;
}
