/**
 * Start a program as a child process and collect what it prints: the one way tests and scripts
 * run another process (a launcher, a group of workers, a benchmark case). The launcher's own
 * worker processes are not started here (launcher/process_context.ts redirects their output to
 * files and supervises them).
 *
 * stdin is closed; stdout is a pipe, collected; stderr is a pipe, collected, unless `stderr:
 * 'inherit'` passes it straight through (a benchmark's progress lines). Output is decoded as UTF-8
 * as it arrives (a character split across two chunks is decoded whole).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { tsNodeArgs } from './runtime.js';

export interface ProcessOptions {
  readonly cwd?: string;
  /** Variables added to (and overriding) this process's environment. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** 'inherit': the child writes to our stderr and `stderr` stays ''. Default 'pipe'. */
  readonly stderr?: 'pipe' | 'inherit';
  /** SIGKILL the child if it is still running after this long (ms): a hung child never hangs the caller. */
  readonly timeoutMs?: number;
}

export interface ProcessExit {
  /** Exit code; null when a signal ended it. */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunningProcess {
  readonly child: ChildProcess;
  /** Output so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves when the child has exited and its output is closed; rejects if it could not be started. */
  readonly done: Promise<ProcessExit>;
}

export function startProcess(command: string, args: readonly string[], opts: ProcessOptions = {}): RunningProcess {
  const child = spawn(command, args, {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', opts.stderr ?? 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
  const done = new Promise<ProcessExit>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  }).finally(() => clearTimeout(timer));
  return { child, stdout: () => stdout, stderr: () => stderr, done };
}

/** Run `command args` to its end. */
export function runProcess(command: string, args: readonly string[], opts: ProcessOptions = {}): Promise<ProcessExit> {
  return startProcess(command, args, opts).done;
}

/** Run a TypeScript program (`node <tsx loader> program ...args`) to its end. */
export function runTsProgram(program: string, args: readonly string[], opts: ProcessOptions = {}): Promise<ProcessExit> {
  return runProcess(process.execPath, [...tsNodeArgs(), program, ...args], opts);
}

/** The last `n` lines of a child's output on one line, for an error message. */
export function lastLines(output: string, n: number): string {
  return output.trim().split('\n').slice(-n).join(' | ');
}
