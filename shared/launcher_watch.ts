/**
 * Preloaded into every worker by the launcher (`node --import <this file> PROGRAM ...`), before
 * the program's own code. Three jobs, all invisible to a healthy worker:
 *
 * 1. No orphans. A launcher killed with SIGKILL cannot stop its workers, so each worker watches
 *    its launcher (ROSEDIST_LAUNCHER_PID) every 500 ms: once it is gone (the worker's parent pid
 *    changes), the worker sends SIGTERM to its process tree (itself and what it started: the
 *    launcher made it lead a process group; the program may clean up) and SIGKILL 3 s later, or
 *    when the worker exits first, so that a child ignoring SIGTERM does not outlive it.
 *    The timers are unref'd: they never keep a finished worker alive.
 * 2. Failures as data. An uncaught exception is recorded in the error file (ROSEDIST_ERROR_FILE)
 *    for the launcher's failure summary. 'uncaughtExceptionMonitor' only observes: Node still
 *    prints the error and exits with code 1 as it would without us.
 * 3. Once the launcher is gone, the last worker to exit removes the run's temporary directory
 *    (shared/run_tmp_dir.ts), which the launcher would have removed.
 *
 * Imports nothing but the env contract, the error-file writer, the process tree and the run's
 * temporary directory, so it loads fast.
 */
import { ENV } from './env.js';
import { writeErrorFile } from './error_file.js';
import { processExists, signalTree, treeMembers } from './process_tree.js';
import { leaveRunTmpDir } from './run_tmp_dir.js';

/** How often the launcher is checked, ms. */
const POLL_MS = 500;
/** From our own SIGTERM to SIGKILL, ms. */
const EXIT_GRACE_MS = 3000;
/** While ending our tree: how often we look whether the rest of it is gone, ms. */
const TREE_POLL_MS = 100;

const rankText = process.env[ENV.rank];
const rank = rankText === undefined ? undefined : Number(rankText);
const errorFile = process.env[ENV.errorFile];

process.on('uncaughtExceptionMonitor', (err) => writeErrorFile(errorFile, err, rank));

const launcherPid = Number(process.env[ENV.launcherPid]);

/** Is the launcher still there? Our parent when it started us; otherwise ask the kernel. */
function launcherAlive(pid: number, parentAtStart: boolean): boolean {
  if (parentAtStart) return process.ppid === pid;
  return processExists(pid);
}

/** Do we lead a process group (started by the launcher in a session of our own)? */
function leadsGroup(): boolean {
  // A group whose id is our pid exists only if we made it.
  return signalTree(process.pid, 0);
}

/** The run's temporary directory (ipc sockets), which the dead launcher cannot remove: the last of its workers does. */
function removeRunTmpDir(): void {
  const dir = process.env[ENV.tmpDir];
  if (dir !== undefined && dir !== '') leaveRunTmpDir(dir);
}

/** SIGTERM ends us as the default action would, but only once the rest of our tree is gone. */
function termAfterTree(): void {
  const poll = setInterval(() => {
    const members = treeMembers(process.pid);
    if (members !== undefined && members.some((pid) => pid !== process.pid)) return;
    clearInterval(poll);
    process.off('SIGTERM', termAfterTree);
    // The default action skips 'exit' handlers.
    removeRunTmpDir();
    process.kill(process.pid, 'SIGTERM');
  }, TREE_POLL_MS);
}

/** The launcher is gone: end our tree, SIGTERM first, SIGKILL after the grace period. */
function endTree(): void {
  if (!leadsGroup()) {
    process.once('exit', removeRunTmpDir);
    setTimeout(() => process.kill(process.pid, 'SIGKILL'), EXIT_GRACE_MS).unref();
    process.kill(process.pid, 'SIGTERM');
    return;
  }
  setTimeout(() => {
    removeRunTmpDir();
    signalTree(process.pid, 'SIGKILL');
  }, EXIT_GRACE_MS).unref();
  // If we end first, what ignores SIGTERM goes with us. Last: the SIGKILL ends this process too.
  process.once('exit', () => {
    removeRunTmpDir();
    signalTree(process.pid, 'SIGKILL');
  });
  // A program without a SIGTERM handler would die at once and leave nobody to send the SIGKILL.
  if (process.listenerCount('SIGTERM') === 0) process.on('SIGTERM', termAfterTree);
  signalTree(process.pid, 'SIGTERM');
}

if (Number.isSafeInteger(launcherPid) && launcherPid > 0) {
  const parentAtStart = process.ppid === launcherPid;
  const timer = setInterval(() => {
    if (launcherAlive(launcherPid, parentAtStart)) return;
    clearInterval(timer);
    endTree();
  }, POLL_MS);
  timer.unref();
}
