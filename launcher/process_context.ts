/**
 * Running workers (torchrun's PContext): start the processes of a WorkerSpec list, report each
 * worker's state, deliver signals. The agent decides what to do; this module only observes.
 *
 * A worker's state is classified when it exits: code 0 → succeeded; an exit after the launcher
 * signalled it → stopped (our doing, not a failure); anything else → failed, with the failure
 * completed from its error file.
 *
 * Each worker runs in a session of its own (shared/process_tree.ts): signals go to its whole
 * process tree, so that what a worker started does not outlive the run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { failureOf, type ProcessFailure } from './failures.js';
import { signalTree, treeAlive } from '../shared/process_tree.js';
import { attachOutput, stdioFor } from './redirects.js';
import type { WorkerSpec } from './worker_spec.js';

export type WorkerState =
  { readonly kind: 'running' } | { readonly kind: 'succeeded' } | { readonly kind: 'stopped' } | { readonly kind: 'failed'; readonly failure: ProcessFailure };

/** A started worker (the instance of a WorkerSpec). */
export interface Worker {
  readonly spec: WorkerSpec;
  readonly pid: number;
  state(): WorkerState;
  /**
   * Send `signal` to the worker's process tree (the worker and what it started, even after the
   * worker itself exited). If the worker is still running, its end counts as stopped, not failed.
   */
  signal(signal: NodeJS.Signals): void;
  /** Does any process of its tree still run (the worker, or processes it started)? */
  treeAlive(): boolean;
  /** Resolves when the process has exited. */
  readonly exited: Promise<void>;
  /** Resolves when it has exited and its output is all written (console and files). */
  readonly finished: Promise<void>;
}

/** Starts workers; the real one spawns processes, tests may pass a fake. */
export interface ProcessContext {
  start(specs: readonly WorkerSpec[]): Worker[];
}

/** After a worker exits, how long its output pipes may stay open (a grandchild holding them), ms. */
const PIPE_LINGER_MS = 2000;

class SubprocessWorker implements Worker {
  readonly pid: number;
  readonly exited: Promise<void>;
  readonly finished: Promise<void>;
  private current: WorkerState = { kind: 'running' };
  private signalled = false;
  private readonly child: ChildProcess;

  constructor(readonly spec: WorkerSpec) {
    // A stale error file from an earlier run with the same id would be read as this worker's.
    rmSync(spec.errorFile, { force: true });
    // Its folder must exist: torch's @record opens the file without creating folders.
    mkdirSync(dirname(spec.errorFile), { recursive: true });
    // detached: a session (and process group) of its own, led by the worker.
    this.child = spawn(spec.command, [...spec.args], { env: spec.env, stdio: stdioFor(spec.output), detached: true });
    this.pid = this.child.pid ?? 0;
    const output = attachOutput(this.child, spec.output);
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.classify(code, signal, undefined);
        const linger = (): void => {
          // Paused: the console or a file is not draining yet; what is in the pipe is still to come.
          if (this.child.stdout?.isPaused() || this.child.stderr?.isPaused()) {
            setTimeout(linger, PIPE_LINGER_MS).unref();
            return;
          }
          this.child.stdout?.destroy();
          this.child.stderr?.destroy();
        };
        setTimeout(linger, PIPE_LINGER_MS).unref();
        resolve();
      });
      this.child.once('error', (e) => {
        // Spawning failed: there will be no 'exit'.
        if (this.pid === 0) {
          this.classify(null, null, e.message);
          resolve();
        }
      });
    });
    this.finished = Promise.all([this.exited, output]).then(() => undefined);
  }

  private classify(code: number | null, signal: NodeJS.Signals | null, spawnError: string | undefined): void {
    if (this.current.kind !== 'running') return;
    if (code === 0) this.current = { kind: 'succeeded' };
    else if (this.signalled) this.current = { kind: 'stopped' };
    else {
      const failure = failureOf({ ...this.spec, pid: this.pid }, code, signal, Date.now());
      this.current = { kind: 'failed', failure: spawnError === undefined ? failure : { ...failure, message: `cannot start: ${spawnError}` } };
    }
  }

  state(): WorkerState {
    return this.current;
  }

  signal(signal: NodeJS.Signals): void {
    if (this.current.kind === 'running') this.signalled = true;
    signalTree(this.pid, signal);
    // A stopped process (SIGSTOP, a debugger) would hold a SIGTERM pending until the grace
    // period ends in SIGKILL: continue it so that it acts on the signal now.
    if (signal !== 'SIGKILL' && signal !== 'SIGCONT') signalTree(this.pid, 'SIGCONT');
  }

  treeAlive(): boolean {
    return treeAlive(this.pid);
  }
}

export const subprocessContext: ProcessContext = {
  start: (specs) => specs.map((spec) => new SubprocessWorker(spec)),
};
