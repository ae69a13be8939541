/**
 * TEST HOOKS for the fault-tolerance tests (test/integration/train_faults.test.ts,
 * launcher_elastic.test.ts): faults injected from the environment, read in this one place and
 * off unless set. They exist so that a test can make a real worker fail at a chosen step; never
 * set them in a real run.
 *
 *   ROSEDIST_TEST_INJECT_NAN=<step>:<rank>  rank <rank> writes NaN into its gradient (index 0)
 *                                           at optimizer step <step>, before the all-reduce
 *   ROSEDIST_TEST_KILL_AT=<step>:<rank>     rank <rank> sends itself SIGKILL when optimizer step
 *                                           <step> begins, on the first attempt only
 *                                           (ROSEDIST_RESTART_COUNT 0), so a restart runs through
 *   ROSEDIST_TEST_SIGNAL_IN_SAVE=<SIGNAL>   the checkpoint writer sends itself <SIGNAL> (SIGINT,
 *                                           SIGTERM, SIGHUP or SIGKILL) when half of the file's
 *                                           bytes are written, at every save
 *   ROSEDIST_TEST_HOLD_AT=<step>:<path>[,...] when optimizer step <step> begins and <path> does not
 *                                           exist, every rank waits until it does (polling; signals
 *                                           still end the worker), rank 0 first creating
 *                                           <path>.held: a test holds a run at a known step, acts
 *                                           (kills a launcher, starts one), then releases it
 *
 * A malformed value is a ConfigError naming the variable (a typo must not silently test nothing).
 */
import { existsSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError } from '../shared/errors.js';

interface StepRank {
  readonly step: number;
  readonly rank: number;
}

export const TEST_HOOK_VARS = {
  injectNan: 'ROSEDIST_TEST_INJECT_NAN',
  killAt: 'ROSEDIST_TEST_KILL_AT',
  signalInSave: 'ROSEDIST_TEST_SIGNAL_IN_SAVE',
  holdAt: 'ROSEDIST_TEST_HOLD_AT',
} as const;

/** How often a held rank looks for its release file, ms. */
const HOLD_POLL_MS = 50;

function parseHolds(env: Readonly<Record<string, string | undefined>>): ReadonlyMap<number, string> {
  const name = TEST_HOOK_VARS.holdAt;
  const text = env[name];
  const holds = new Map<number, string>();
  if (text === undefined || text === '') return holds;
  for (const part of text.split(',')) {
    const m = /^(\d+):(.+)$/.exec(part.trim());
    if (!m) throw new ConfigError(`test hook ${name}=${JSON.stringify(text)} is not <step>:<path>[,...]`, `set it like ${name}=5:/tmp/release, or unset it`);
    holds.set(Number(m[1]), m[2] as string);
  }
  return holds;
}

const SAVE_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGKILL'] as const;

function parseSignal(env: Readonly<Record<string, string | undefined>>, name: string): NodeJS.Signals | undefined {
  const text = env[name];
  if (text === undefined || text === '') return undefined;
  const signal = SAVE_SIGNALS.find((s) => s === text.trim());
  if (signal === undefined)
    throw new ConfigError(`test hook ${name}=${JSON.stringify(text)} is not one of ${SAVE_SIGNALS.join(', ')}`, `set it like ${name}=SIGTERM, or unset it`);
  return signal;
}

function parse(env: Readonly<Record<string, string | undefined>>, name: string): StepRank | undefined {
  const text = env[name];
  if (text === undefined || text === '') return undefined;
  const m = /^(\d+):(\d+)$/.exec(text.trim());
  if (!m) throw new ConfigError(`test hook ${name}=${JSON.stringify(text)} is not <step>:<rank>`, `set it like ${name}=3:1, or unset it`);
  return { step: Number(m[1]), rank: Number(m[2]) };
}

export class TestHooks {
  private constructor(
    private readonly nanAt: StepRank | undefined,
    private readonly killAt: StepRank | undefined,
    private readonly saveSignal: NodeJS.Signals | undefined,
    private readonly holds: ReadonlyMap<number, string> = new Map(),
  ) {}

  /** The hooks set in `env` (default: this process's environment). Throws ConfigError. */
  static read(env: Readonly<Record<string, string | undefined>> = process.env): TestHooks {
    return new TestHooks(
      parse(env, TEST_HOOK_VARS.injectNan),
      parse(env, TEST_HOOK_VARS.killAt),
      parseSignal(env, TEST_HOOK_VARS.signalInSave),
      parseHolds(env),
    );
  }

  /** At the start of optimizer step `step`: die by SIGKILL if asked (first attempt only). */
  atStepStart(step: number, rank: number, restartCount: number): void {
    const k = this.killAt;
    if (k !== undefined && k.step === step && k.rank === rank && restartCount === 0) process.kill(process.pid, 'SIGKILL');
  }

  /** At the start of optimizer step `step`: wait for the release file of a hold there, if asked. */
  async holdAt(step: number, rank: number): Promise<void> {
    const path = this.holds.get(step);
    if (path === undefined || existsSync(path)) return;
    if (rank === 0) writeFileSync(`${path}.held`, String(step));
    while (!existsSync(path)) await sleep(HOLD_POLL_MS);
  }

  /** After the local backward pass of `step`: poison `grads` [numParams] if asked. */
  poisonGradient(step: number, rank: number, grads: Float32Array): void {
    const n = this.nanAt;
    if (n !== undefined && n.step === step && n.rank === rank && grads.length > 0) grads[0] = Number.NaN;
  }

  /** Halfway through writing a checkpoint: the signal to send to this process, if asked; else undefined. */
  get midSave(): (() => void) | undefined {
    const signal = this.saveSignal;
    return signal === undefined ? undefined : () => process.kill(process.pid, signal);
  }
}
