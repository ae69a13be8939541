/**
 * Rank 0's view of a running training loop: step / total, tokens per second, ETA, last train
 * loss, last val perplexity.
 *   - On a TTY (`stream.isTTY`): one live bar (cli-progress), redrawn in place at most 5 times a
 *     second. Redraws go to `stream` only, never to `write`, so the log file never sees them.
 *   - Otherwise (CI, pipes, files): a plain line through `write` every `plainEverySteps` steps,
 *     on the first update and on the last step.
 *   - Disabled (ranks other than 0): every method is a no-op.
 * ETA = steps left / mean rate since the first update (the first step is excluded: it carries
 * the one-time kernel compilation).
 */
import cliProgress from 'cli-progress';

export interface ProgressFields {
  /** Training tokens per second, all ranks together, of the last step (or a recent mean). */
  readonly tokensPerSec?: number;
  /** Training loss of the last optimizer step (nats per token). */
  readonly trainLoss?: number;
  /** Val perplexity of the last evaluation; shown until the next one. */
  readonly valPpl?: number;
}

export interface ProgressOptions {
  /** Step at which training ends (the bar's 100%). */
  readonly total: number;
  /** Step training (re)starts from: 0, or the resumed checkpoint's step. */
  readonly startStep: number;
  /** False on ranks other than 0. */
  readonly enabled: boolean;
  /** Where the bar is drawn and whose `isTTY` picks the mode (default process.stderr). */
  readonly stream?: NodeJS.WriteStream;
  /** false: plain lines even on a TTY (a JSON console). Default true: a bar when `stream.isTTY`. */
  readonly bar?: boolean;
  /** Plain mode: a line every this many steps (default: about 20 lines over the run). */
  readonly plainEverySteps?: number;
  /** Plain mode: where lines go, without a newline (default: written to `stream`). */
  readonly write?: (line: string) => void;
}

export interface Progress {
  /** 'bar' on a TTY, 'lines' otherwise, 'off' when disabled. */
  readonly mode: 'bar' | 'lines' | 'off';
  /** `step` optimizer steps are done; fields not given keep their last value. */
  update(step: number, f: ProgressFields): void;
  /** Print a line without tearing the bar (above it on a TTY; through `write` otherwise). */
  log(line: string): void;
  /** Draw the final state and release the terminal. Idempotent; call it in a `finally`: until then the bar's redraw timer keeps the process alive. */
  stop(): void;
}

/** The last values shown, and the clock for the rate. */
interface State {
  step: number;
  tokensPerSec: number | undefined;
  trainLoss: number | undefined;
  valPpl: number | undefined;
  /** First update: step and time (ms), the origin of the mean rate. */
  first: { step: number; ms: number } | undefined;
  etaS: number | undefined;
}

/** Seconds left at the mean rate (steps/s) since the first update; undefined before any progress. */
export function etaSeconds(step: number, total: number, first: { step: number; ms: number }, nowMs: number): number | undefined {
  const done = step - first.step;
  const elapsedS = (nowMs - first.ms) / 1000;
  if (done <= 0 || elapsedS <= 0) return undefined;
  return Math.max(0, total - step) / (done / elapsedS);
}

/**
 * Throughput over the last `window` samples (e.g. tokens per optimizer step and the step's
 * seconds): sum of units / sum of seconds, so one slow step moves it by 1/window at most.
 */
export class RateMeter {
  private readonly samples: { units: number; seconds: number }[] = [];
  constructor(private readonly window = 10) {}

  add(units: number, seconds: number): void {
    this.samples.push({ units, seconds });
    if (this.samples.length > this.window) this.samples.shift();
  }

  /** Units per second, or undefined before any sample with time in it. */
  rate(): number | undefined {
    const seconds = this.samples.reduce((a, s) => a + s.seconds, 0);
    return seconds > 0 ? this.samples.reduce((a, s) => a + s.units, 0) / seconds : undefined;
  }
}

/** 42s, 3m07s, 2h05m */
export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '-';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

const num = (v: number | undefined, digits: number): string => (v === undefined ? '-' : v.toFixed(digits));

/** The fields after "step n/total", shared by both modes. */
function fieldsText(s: Pick<State, 'tokensPerSec' | 'etaS' | 'trainLoss' | 'valPpl'>): string {
  return `${num(s.tokensPerSec, 0)} tok/s | ETA ${formatDuration(s.etaS)} | train loss ${num(s.trainLoss, 3)} | val ppl ${num(s.valPpl, 2)}`;
}

/** One plain-mode line, e.g. "step 120/1000 (12%) | 4321 tok/s | ETA 3m12s | train loss 3.412 | val ppl 28.71". */
export function plainLine(s: State, total: number): string {
  const pct = total > 0 ? Math.floor((100 * s.step) / total) : 100;
  return `step ${s.step}/${total} (${pct}%) | ${fieldsText(s)}`;
}

const noop: Progress = { mode: 'off', update() {}, log() {}, stop() {} };

export function createProgress(opts: ProgressOptions): Progress {
  if (!opts.enabled) return noop;
  const stream = opts.stream ?? process.stderr;
  const state: State = { step: opts.startStep, tokensPerSec: undefined, trainLoss: undefined, valPpl: undefined, first: undefined, etaS: undefined };
  const record = (step: number, f: ProgressFields): void => {
    const now = performance.now();
    state.step = step;
    state.tokensPerSec = f.tokensPerSec ?? state.tokensPerSec;
    state.trainLoss = f.trainLoss ?? state.trainLoss;
    state.valPpl = f.valPpl ?? state.valPpl;
    if (state.first === undefined) state.first = { step, ms: now };
    state.etaS = etaSeconds(step, opts.total, state.first, now);
  };
  return stream.isTTY === true && opts.bar !== false ? barProgress(opts, stream, state, record) : linesProgress(opts, stream, state, record);
}

function linesProgress(opts: ProgressOptions, stream: NodeJS.WriteStream, state: State, record: (step: number, f: ProgressFields) => void): Progress {
  const every = Math.max(1, Math.floor(opts.plainEverySteps ?? Math.ceil((opts.total - opts.startStep) / 20)));
  const write = opts.write ?? ((line: string) => void stream.write(`${line}\n`));
  let lastPrinted: number | undefined;
  let stopped = false;
  return {
    mode: 'lines',
    update(step, f) {
      if (stopped) return;
      record(step, f);
      const due = lastPrinted === undefined || step >= opts.total || Math.floor(step / every) > Math.floor(lastPrinted / every);
      if (!due) return;
      lastPrinted = step;
      write(plainLine(state, opts.total));
    },
    log: (line) => write(line),
    stop() {
      // The final state, unless the last update already printed it.
      if (!stopped && state.first !== undefined && lastPrinted !== state.step) write(plainLine(state, opts.total));
      stopped = true;
    },
  };
}

/**
 * The bar's view of the terminal. cli-progress saves the cursor at start and restores it at stop
 * (ESC 7 / ESC 8): after lines printed above the bar in between, the restore jumps back up and
 * whatever comes next overwrites them. Those two sequences are dropped; everything else passes.
 */
function withoutCursorRestore(stream: NodeJS.WriteStream): NodeJS.WritableStream {
  const view = {
    isTTY: true,
    get columns(): number | undefined {
      return stream.columns;
    },
    write(chunk: string, ...rest: unknown[]): boolean {
      if (chunk === '\x1b7' || chunk === '\x1b8') return true;
      return (stream.write as (c: string, ...r: unknown[]) => boolean)(chunk, ...rest);
    },
  };
  return view as unknown as NodeJS.WritableStream;
}

/**
 * Bar cells (5 to 24) that leave room on one terminal line for the text around the bar at typical
 * figures: cli-progress trims a line to the terminal width, which would cut off val ppl first.
 */
export function barWidth(columns: number | undefined, total: number): number {
  const typical = fieldsText({ tokensPerSec: 9999, etaS: 599, trainLoss: 9.999, valPpl: 99.99 });
  const text = `step ${total}/${total} || 100% | ${typical}`;
  return Math.max(5, Math.min(24, (columns ?? 80) - 1 - text.length));
}

function barProgress(opts: ProgressOptions, stream: NodeJS.WriteStream, state: State, record: (step: number, f: ProgressFields) => void): Progress {
  const bar = new cliProgress.SingleBar(
    {
      stream: withoutCursorRestore(stream),
      format: 'step {value}/{total} |{bar}| {percentage}% | {fields}',
      barsize: barWidth(stream.columns, opts.total),
      fps: 5,
      // Redraw even when unchanged: a log line printed by someone else then costs at most 200 ms
      // of a missing bar instead of a torn one.
      forceRedraw: true,
      // Nothing that must be undone if the process is killed mid-run: the cursor stays visible,
      // line wrapping stays on (the bar is trimmed to the terminal width instead), and no
      // SIGINT/SIGTERM listeners (they would turn off Node's default exit on the launcher's signal).
      hideCursor: null,
      linewrap: true,
      gracefulExit: false,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(opts.total, opts.startStep, { fields: fieldsText(state) });
  let stopped = false;
  return {
    mode: 'bar',
    update(step, f) {
      if (stopped) return;
      record(step, f);
      bar.update(step, { fields: fieldsText(state) });
    },
    log(line) {
      // Column 0, clear the bar's line, print, then redraw the bar on the line below.
      stream.write(`\r\x1b[K${line}\n`);
      if (!stopped) bar.render();
    },
    stop() {
      if (stopped) return;
      stopped = true;
      bar.stop();
    },
  };
}
