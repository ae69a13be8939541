/**
 * The agent (torchrun's SimpleElasticAgent): supervises this node's worker group, attempt after
 * attempt, as the rendezvous instructs.
 *
 * Each monitor tick (--monitor-interval) looks at the group's state:
 *   healthy   → keep watching, unless the run asked to stop (another node failed)
 *   succeeded → report it; the coordinator ends the run once every node has
 *   failed    → tell the others at once, stop the rest of the group (SIGTERM, SIGKILL after the
 *               grace period), report the failures; the coordinator restarts or ends the run
 * Stopping reaches each worker's whole process tree (shared/process_tree.ts), including what
 * an exited worker left running; after success too, so that nothing a worker started outlives the run.
 * A signal to the launcher (SIGINT, SIGTERM, SIGHUP) is forwarded to the workers; the agent waits
 * for them (SIGKILL after the grace period) and ends with 128 + the signal's number.
 */
import { constants } from 'node:os';
import { join } from 'node:path';
import type { LaunchConfig } from './config.js';
import type { EventSink } from './events.js';
import { formatSummary, type ProcessFailure } from './failures.js';
import type { ProcessContext, Worker } from './process_context.js';
import type { Instruction, Rendezvous } from './coordinator_client.js';
import { reserveRunDir } from './run_dirs.js';
import { workerSpecs } from './worker_spec.js';
import { MEMBERSHIP_CHANGE_VAR } from '../shared/env.js';
import { addWorkers } from '../shared/run_tmp_dir.js';
import { setLongTimeout, sleep } from '../shared/timers.js';

/** While stopping: how often the workers' process trees are looked at once the workers exited, ms. */
const TREE_POLL_MS = 50;

export interface RunResult {
  readonly exitCode: number;
  /** The last attempt's failures, root cause first (empty on success or interrupt). */
  readonly failures: readonly ProcessFailure[];
}

type GroupState = { readonly kind: 'healthy' } | { readonly kind: 'succeeded' } | { readonly kind: 'failed'; readonly failures: readonly ProcessFailure[] };

function groupState(workers: readonly Worker[]): GroupState {
  const failures: ProcessFailure[] = [];
  let running = 0;
  let stopped = 0;
  for (const w of workers) {
    const s = w.state();
    switch (s.kind) {
      case 'running':
        running += 1;
        break;
      case 'succeeded':
        break;
      case 'stopped':
        stopped += 1;
        break;
      case 'failed':
        failures.push(s.failure);
        break;
      default: {
        const never: never = s;
        throw new Error(`unknown worker state ${JSON.stringify(never)}`);
      }
    }
  }
  if (failures.length > 0 || (running === 0 && stopped > 0)) return { kind: 'failed', failures };
  return running > 0 ? { kind: 'healthy' } : { kind: 'succeeded' };
}

function failuresOf(workers: readonly Worker[]): ProcessFailure[] {
  return workers.flatMap((w) => {
    const s = w.state();
    return s.kind === 'failed' ? [s.failure] : [];
  });
}

/** Sleeps that a signal cuts short. */
class Waker {
  private wake: (() => void) | undefined;
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        timer.clear();
        if (this.wake === done) this.wake = undefined;
        resolve();
      };
      // Any length (a huge --monitor-interval or grace period would otherwise fire at once).
      const timer = setLongTimeout(done, ms);
      this.wake = done;
    });
  }
  poke(): void {
    this.wake?.();
  }
}

export interface AgentOptions {
  readonly config: LaunchConfig;
  readonly rendezvous: Rendezvous;
  readonly context: ProcessContext;
  readonly emit: EventSink;
  /** Where error files go without --log-dir: a temporary directory (the run's files go in <it>/<run-id>). */
  readonly fileBase: string;
  /** The run's directory for the workers' temporary files (ipc sockets), which the caller removes; undefined: theirs. */
  readonly tmpDir?: string;
}

export class Agent {
  private signal: NodeJS.Signals | undefined;
  private signals = 0;
  /** The run id the nodes agreed on (node 0's when this node generated its own). */
  private runId: string;
  /** Cuts the grace period short: a further signal. */
  private readonly waker = new Waker();
  /** Where this run's logs and error files go (launcher/run_dirs.ts); set at the first attempt. */
  private runDir: string | undefined;
  /** Cuts a monitor interval short: a signal, or a worker's exit (noticed at once, whatever the interval). */
  private readonly monitor = new Waker();
  private interrupted: () => void = () => {};
  private readonly interruption = new Promise<void>((resolve) => {
    this.interrupted = resolve;
  });

  constructor(private readonly opts: AgentOptions) {
    this.runId = opts.config.runId;
  }

  /** Called from the launcher's signal handlers. */
  interrupt(signal: NodeJS.Signals): void {
    this.signals += 1;
    this.signal ??= signal;
    if (this.signals === 1) this.opts.emit({ kind: 'interrupted', signal });
    this.interrupted();
    this.waker.poke();
    this.monitor.poke();
  }

  async run(): Promise<RunResult> {
    const { rendezvous } = this.opts;
    let attempt = 0;
    for (;;) {
      const next = await Promise.race([rendezvous.next(), this.interruption.then(() => undefined)]);
      if (next === undefined || this.signal !== undefined) {
        rendezvous.abort(attempt, this.signal ?? 'SIGTERM');
        rendezvous.finished(attempt, []);
        return this.interruptedResult();
      }
      if (next.type === 'end') return this.end(next, attempt);
      attempt = next.attempt;
      this.runId = next.layout.runId;
      if (next.nodeRank !== undefined) {
        // Elastic: rounds are not all restarts (a joining node spends none).
        if (next.change !== undefined)
          this.opts.emit({
            kind: 'membership',
            text: `${next.change}: round ${attempt} (restarts spent ${next.restartCount ?? 0} of ${this.opts.config.maxRestarts})`,
          });
        else if (attempt > 0)
          this.opts.emit({
            kind: 'restarting',
            attempt: next.restartCount ?? attempt,
            maxRestarts: this.opts.config.maxRestarts,
            cause: next.cause,
            reason: undefined,
          });
      } else if (attempt > 0) {
        this.opts.emit({ kind: 'restarting', attempt, maxRestarts: this.opts.config.maxRestarts, cause: next.cause, reason: undefined });
      }
      const interrupted = await this.runAttempt(next);
      if (interrupted) return this.interruptedResult();
    }
  }

  /** Start the group of one attempt and watch it until it is over here. True if interrupted. */
  private async runAttempt(start: Extract<Instruction, { type: 'start' }>): Promise<boolean> {
    const { config, rendezvous, emit } = this.opts;
    // Elastic: this round's node rank and node count; the workers learn what changed.
    const nodeRank = start.nodeRank ?? config.nodeRank;
    const roundConfig = start.nodeRank === undefined ? config : { ...config, nodeRank, nnodes: start.layout.localWorldSizes.length };
    const baseEnv: Record<string, string | undefined> = { ...process.env };
    delete baseEnv[MEMBERSHIP_CHANGE_VAR];
    if (start.change !== undefined) baseEnv[MEMBERSHIP_CHANGE_VAR] = start.change;
    // One directory for every attempt of this run, made when the nodes agreed on the run id.
    this.runDir ??= config.logDir !== undefined ? reserveRunDir(config.logDir, start.layout.runId) : join(this.opts.fileBase, start.layout.runId);
    const specs = workerSpecs(roundConfig, start.layout, start.attempt, this.runDir, baseEnv, this.opts.tmpDir, start.restartCount);
    const first = specs[0]?.rank ?? 0;
    emit({
      kind: 'starting',
      runId: start.layout.runId,
      attempt: start.attempt,
      nodeRank,
      ranks: [first, first + specs.length - 1],
      worldSize: start.layout.worldSize,
      masterAddr: config.masterAddr,
      masterPort: config.masterPort,
      logs: config.logDir === undefined ? undefined : this.runDir,
    });
    const workers = this.opts.context.start(specs);
    // They hold the run's temporary directory too, should this launcher die first (shared/run_tmp_dir.ts).
    if (this.opts.tmpDir !== undefined)
      addWorkers(
        this.opts.tmpDir,
        workers.map((w) => w.pid),
      );
    for (const w of workers) void w.exited.then(() => this.monitor.poke());
    for (;;) {
      if (this.signal !== undefined) {
        await this.stop(workers, this.signal);
        rendezvous.abort(start.attempt, this.signal);
        rendezvous.finished(start.attempt, failuresOf(workers));
        return true;
      }
      const state = groupState(workers);
      switch (state.kind) {
        case 'healthy':
          if (rendezvous.stopRequested(start.attempt)) {
            await this.stop(workers, 'SIGTERM');
            rendezvous.finished(start.attempt, failuresOf(workers));
            return false;
          }
          break;
        case 'succeeded':
          // Processes a worker started and left running end with the run.
          await this.stop(workers, 'SIGTERM');
          rendezvous.finished(start.attempt, []);
          return false;
        case 'failed':
          rendezvous.failing(start.attempt);
          // Which rank died, said at once (the summary or the restart line follows the teardown).
          for (const failure of state.failures) emit({ kind: 'worker_failed', failure });
          await this.stop(workers, 'SIGTERM');
          rendezvous.finished(start.attempt, failuresOf(workers));
          return false;
        default: {
          const never: never = state;
          throw new Error(`unknown group state ${JSON.stringify(never)}`);
        }
      }
      await this.monitor.sleep(config.monitorIntervalMs);
    }
  }

  /**
   * Signal every worker whose process tree still runs (a running worker, or one that exited but
   * left processes it started), SIGKILL the trees left after the grace period, wait for their output.
   */
  private async stop(workers: readonly Worker[], signal: NodeJS.Signals): Promise<void> {
    const targets = workers.filter((w) => w.treeAlive());
    if (targets.length > 0) {
      const { stopGraceMs } = this.opts.config;
      const running = targets.filter((w) => w.state().kind === 'running');
      const strays = targets.filter((w) => w.state().kind !== 'running');
      if (running.length > 0) this.opts.emit({ kind: 'stopping', ranks: running.map((w) => w.spec.rank), signal, graceMs: stopGraceMs });
      if (strays.length > 0) this.opts.emit({ kind: 'leftovers', ranks: strays.map((w) => w.spec.rank), signal, graceMs: stopGraceMs });
      for (const w of targets) w.signal(signal);
      const allExited = Promise.all(targets.map((w) => w.exited));
      let waiting = true;
      const allGone = allExited.then(async () => {
        // The workers are gone; what they started may take a moment longer.
        while (waiting && targets.some((w) => w.treeAlive())) await sleep(TREE_POLL_MS);
      });
      // A further signal to the launcher (a second Ctrl-C) cuts the grace period short.
      await Promise.race([allGone, this.waker.sleep(stopGraceMs)]);
      waiting = false;
      this.waker.poke();
      const left = targets.filter((w) => w.treeAlive());
      if (left.length > 0) {
        this.opts.emit({ kind: 'killing', ranks: left.map((w) => w.spec.rank) });
        for (const w of left) w.signal('SIGKILL');
      }
      await allExited;
    }
    await Promise.all(workers.map((w) => w.finished));
  }

  private end(end: Extract<Instruction, { type: 'end' }>, attempt: number): RunResult {
    const { config, emit } = this.opts;
    if (end.rendezvousFailed === true) {
      emit({ kind: 'rendezvous_failed', reason: end.reason ?? 'too few nodes' });
      return { exitCode: 1, failures: [] };
    }
    if (end.ok) {
      emit({ kind: 'succeeded', runId: this.runId, attempt: end.attempt });
      return { exitCode: 0, failures: [] };
    }
    const text = formatSummary({
      runId: this.runId,
      attempt: end.attempt >= 0 ? end.attempt : attempt,
      maxRestarts: config.maxRestarts,
      failures: end.failures,
      reason: end.reason,
      showErrorFiles: config.logDir !== undefined,
    });
    emit({ kind: 'summary', text });
    return { exitCode: 1, failures: end.failures };
  }

  private interruptedResult(): RunResult {
    const signal = this.signal ?? 'SIGTERM';
    return { exitCode: 128 + (constants.signals[signal] ?? 15), failures: [] };
  }
}
