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
 *
 * A malformed value is a ConfigError naming the variable (a typo must not silently test nothing).
 */
import { ConfigError } from '../shared/errors.js';

interface StepRank {
  readonly step: number;
  readonly rank: number;
}

export const TEST_HOOK_VARS = {
  injectNan: 'ROSEDIST_TEST_INJECT_NAN',
  killAt: 'ROSEDIST_TEST_KILL_AT',
  signalInSave: 'ROSEDIST_TEST_SIGNAL_IN_SAVE',
} as const;

const SAVE_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGKILL'] as const;

function parseSignal(env: Readonly<Record<string, string | undefined>>, name: string): NodeJS.Signals | undefined {
  const text = env[name];
  if (text === undefined || text === '') return undefined;
  const signal = SAVE_SIGNALS.find((s) => s === text.trim());
  if (signal === undefined) throw new ConfigError(`test hook ${name}=${JSON.stringify(text)} is not one of ${SAVE_SIGNALS.join(', ')}`, `set it like ${name}=SIGTERM, or unset it`);
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
  ) {}

  /** The hooks set in `env` (default: this process's environment). Throws ConfigError. */
  static read(env: Readonly<Record<string, string | undefined>> = process.env): TestHooks {
    return new TestHooks(parse(env, TEST_HOOK_VARS.injectNan), parse(env, TEST_HOOK_VARS.killAt), parseSignal(env, TEST_HOOK_VARS.signalInSave));
  }

  /** At the start of optimizer step `step`: die by SIGKILL if asked (first attempt only). */
  atStepStart(step: number, rank: number, restartCount: number): void {
    const k = this.killAt;
    if (k !== undefined && k.step === step && k.rank === rank && restartCount === 0) process.kill(process.pid, 'SIGKILL');
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
