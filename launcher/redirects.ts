/**
 * Worker output: which stream goes to the console (prefixed `[rank3]:` like torchrun), which to
 * files, which to both.
 *
 * `--redirects` and `--tee` take torchrun's values: 0 none, 1 stdout, 2 stderr, 3 both, either for
 * every local rank ("3") or per local rank ("0:1,1:2", unnamed ranks get 0). A redirected stream
 * goes to its file only; a tee'd one to its file and the console; any other to the console alone.
 * `--local-ranks-filter` limits the console, never the files. Files live at
 * <log-dir>/<run-id>/attempt_<n>/<rank>/{stdout,stderr}.log and hold the raw bytes.
 */
import type { ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { ConfigError } from '../shared/errors.js';
import { LineSplitter } from './lines.js';

/** torchrun's Std: a bit set, 1 = stdout, 2 = stderr. */
export type Std = 0 | 1 | 2 | 3;

export interface StdSpec {
  /** The value for local ranks not named in `byLocalRank`. */
  readonly all: Std;
  readonly byLocalRank: ReadonlyMap<number, Std>;
}

export type StreamName = 'stdout' | 'stderr';

function std(option: string, text: string): Std {
  if (!/^[0-3]$/.test(text.trim())) {
    throw new ConfigError(
      `${option} ${JSON.stringify(text)} is not 0, 1, 2 or 3`,
      `pass ${option} 0 (none), 1 (stdout), 2 (stderr) or 3 (both), or per local rank like "0:1,1:2"`,
    );
  }
  return Number(text) as Std;
}

/** Parse "3" or "0:1,1:2"; `option` names the flag in errors. */
export function parseStdSpec(option: string, text: string): StdSpec {
  if (!text.includes(':')) return Object.freeze({ all: std(option, text), byLocalRank: new Map() });
  const byLocalRank = new Map<number, Std>();
  for (const part of text.split(',')) {
    const [rank, value, extra] = part.split(':');
    if (rank === undefined || value === undefined || extra !== undefined || !/^\d+$/.test(rank.trim())) {
      throw new ConfigError(
        `${option} ${JSON.stringify(text)} is malformed at ${JSON.stringify(part)}`,
        `write per-rank values as LOCAL_RANK:VALUE pairs, e.g. "0:1,1:2"`,
      );
    }
    byLocalRank.set(Number(rank), std(option, value));
  }
  return Object.freeze({ all: 0, byLocalRank });
}

export function stdFor(spec: StdSpec, localRank: number): Std {
  return spec.byLocalRank.get(localRank) ?? spec.all;
}

function has(s: Std, stream: StreamName): boolean {
  return (s & (stream === 'stdout' ? 1 : 2)) !== 0;
}

/** Where one worker's two streams go. */
export interface OutputPlan {
  readonly rank: number;
  readonly console: Readonly<Record<StreamName, boolean>>;
  /** File per stream; undefined: none. */
  readonly files: Readonly<Record<StreamName, string | undefined>>;
}

export interface OutputOptions {
  readonly rank: number;
  readonly localRank: number;
  readonly redirects: StdSpec;
  readonly tee: StdSpec;
  /** Local ranks shown on the console; undefined: all. */
  readonly localRanksFilter: ReadonlySet<number> | undefined;
  /** <log-dir>/<run-id>/attempt_<n>/<rank>; undefined: no log dir, no files. */
  readonly dir: string | undefined;
}

export function outputPlan(o: OutputOptions): OutputPlan {
  const redirected = stdFor(o.redirects, o.localRank);
  const teed = stdFor(o.tee, o.localRank);
  const shown = o.localRanksFilter === undefined || o.localRanksFilter.has(o.localRank);
  const plan = (s: StreamName) => ({
    console: shown && !has(redirected, s),
    file: o.dir !== undefined && (has(redirected, s) || has(teed, s)) ? `${o.dir}/${s}.log` : undefined,
  });
  const out = plan('stdout');
  const err = plan('stderr');
  return {
    rank: o.rank,
    console: { stdout: out.console, stderr: err.console },
    files: { stdout: out.file, stderr: err.file },
  };
}

/** The `stdio` option for spawn: a pipe where someone reads the stream, 'ignore' elsewhere. */
export function stdioFor(plan: OutputPlan): ['ignore', 'pipe' | 'ignore', 'pipe' | 'ignore'] {
  const mode = (s: StreamName) => (plan.console[s] || plan.files[s] !== undefined ? 'pipe' : 'ignore');
  return ['ignore', mode('stdout'), mode('stderr')];
}

/**
 * Longest console line, UTF-16 code units: a longer worker line (100 MB without a newline) is shown
 * as several prefixed lines of this length, so the launcher holds at most this much of a line.
 * The files get the bytes unchanged.
 */
export const MAX_CONSOLE_LINE = 64 * 1024;

/** One pending 'drain' per destination, however many pumps wait for it (no listener per pump). */
const drains = new WeakMap<Writable, Promise<void>>();

function drained(w: Writable): Promise<void> {
  let p = drains.get(w);
  if (p === undefined) {
    p = new Promise<void>((resolve) => {
      const done = (): void => {
        w.off('drain', done);
        w.off('close', done);
        drains.delete(w);
        resolve();
      };
      w.on('drain', done);
      w.on('close', done);
    });
    drains.set(w, p);
  }
  return p;
}

function closeFile(file: WriteStream): Promise<void> {
  return new Promise((resolve) => file.end(resolve));
}

/**
 * Pump one stream of a worker to its console and file; resolves when it ended and the file is
 * flushed. Backpressure: while the file or the console does not take more (write() returned
 * false), the worker's pipe is paused, so the worker blocks on its writes instead of the launcher
 * buffering without bound.
 */
function pump(source: Readable, plan: OutputPlan, stream: StreamName, sink: Writable): Promise<void> {
  const path = plan.files[stream];
  let file: WriteStream | undefined;
  if (path !== undefined) {
    mkdirSync(dirname(path), { recursive: true });
    file = createWriteStream(path);
  }
  const prefix = `[rank${plan.rank}]:`;
  // The console lines of one chunk, written with one write().
  let batch: string[] = [];
  const lines = plan.console[stream]
    ? new LineSplitter((line) => batch.push(prefix, line, '\n'), { maxLine: MAX_CONSOLE_LINE, carriageReturn: true })
    : undefined;
  let waits: Promise<void>[] = [];
  const writeConsole = (): void => {
    if (batch.length === 0) return;
    const text = batch.join('');
    batch = [];
    if (!sink.write(text)) waits.push(drained(sink));
  };
  return new Promise((resolve) => {
    source.on('data', (chunk: Buffer) => {
      if (file !== undefined && !file.write(chunk)) waits.push(drained(file));
      if (lines !== undefined) {
        lines.push(chunk);
        writeConsole();
      }
      if (waits.length > 0) {
        source.pause();
        const all = Promise.all(waits);
        waits = [];
        void all.then(() => source.resume());
      }
    });
    // 'close' also comes after an error; either way the stream is done.
    source.on('close', () => {
      lines?.flush();
      writeConsole();
      void (file ? closeFile(file) : Promise.resolve()).then(resolve);
    });
  });
}

/** Wire a spawned worker's output per `plan`. Resolves once everything it wrote is out. */
export function attachOutput(child: ChildProcess, plan: OutputPlan, sinks: Record<StreamName, Writable> = process): Promise<void> {
  const pending: Promise<void>[] = [];
  if (child.stdout) pending.push(pump(child.stdout, plan, 'stdout', sinks.stdout));
  if (child.stderr) pending.push(pump(child.stderr, plan, 'stderr', sinks.stderr));
  return Promise.all(pending).then(() => undefined);
}
