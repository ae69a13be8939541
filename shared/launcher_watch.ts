/**
 * Preloaded into every worker by the launcher (`node --import <this file> PROGRAM ...`), before
 * the program's own code. Two jobs, both invisible to a healthy worker:
 *
 * 1. No orphans. A launcher killed with SIGKILL cannot stop its workers, so each worker watches
 *    its launcher (ROSEDIST_LAUNCHER_PID) every 500 ms: once it is gone (the worker's parent pid
 *    changes), the worker sends itself SIGTERM (the program may clean up) and SIGKILL 3 s later.
 *    The timers are unref'd: they never keep a finished worker alive.
 * 2. Failures as data. An uncaught exception is recorded in the error file (ROSEDIST_ERROR_FILE)
 *    for the launcher's failure summary. 'uncaughtExceptionMonitor' only observes: Node still
 *    prints the error and exits with code 1 as it would without us.
 *
 * Imports nothing but the env contract and the error-file writer, so it loads fast.
 */
import { ENV } from './env.js';
import { writeErrorFile } from './error_file.js';

/** How often the launcher is checked, ms. */
const POLL_MS = 500;
/** From our own SIGTERM to SIGKILL, ms. */
const EXIT_GRACE_MS = 3000;

const rankText = process.env[ENV.rank];
const rank = rankText === undefined ? undefined : Number(rankText);
const errorFile = process.env[ENV.errorFile];

process.on('uncaughtExceptionMonitor', (err) => writeErrorFile(errorFile, err, rank));

const launcherPid = Number(process.env[ENV.launcherPid]);

/** Is the launcher still there? Our parent when it started us; otherwise ask the kernel. */
function launcherAlive(pid: number, parentAtStart: boolean): boolean {
  if (parentAtStart) return process.ppid === pid;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

if (Number.isSafeInteger(launcherPid) && launcherPid > 0) {
  const parentAtStart = process.ppid === launcherPid;
  const timer = setInterval(() => {
    if (launcherAlive(launcherPid, parentAtStart)) return;
    clearInterval(timer);
    setTimeout(() => process.kill(process.pid, 'SIGKILL'), EXIT_GRACE_MS).unref();
    process.kill(process.pid, 'SIGTERM');
  }, POLL_MS);
  timer.unref();
}
