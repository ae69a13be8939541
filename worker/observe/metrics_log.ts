/**
 * What rank 0 records per evaluation: one readable log line and one JSON line in the metrics file
 * (shared/metrics.ts schema). The readable line has a fixed shape, parsed back by `parseEvalLine`
 * (tests and smoke scripts check `val ppl = exp(val loss)` from the log alone):
 *
 *   step 10/50 | train loss 9.253112 | val loss 9.231044 | val ppl 10211.551 | amp: false
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { FileError } from '../../shared/errors.js';
import type { MetricsRecord } from '../../shared/metrics.js';

export function formatEvalLine(r: MetricsRecord, numSteps: number): string {
  return (
    `step ${r.step}/${numSteps} | train loss ${r.train_loss.toFixed(6)}${r.skipped ? ' (step skipped)' : ''} | val loss ${r.val_loss.toFixed(6)} | ` +
    `val ppl ${r.val_ppl.toFixed(3)} | amp: false`
  );
}

export interface EvalLine {
  readonly step: number;
  readonly numSteps: number;
  readonly trainLoss: number;
  readonly valLoss: number;
  readonly valPpl: number;
}

const EVAL_LINE = /step (\d+)\/(\d+) \| train loss (\S+)(?: \(step skipped\))? \| val loss (\S+) \| val ppl (\S+) \| amp: false/;

/** The eval line inside `line` (a log line may carry a timestamp and level first), or undefined. */
export function parseEvalLine(line: string): EvalLine | undefined {
  const m = EVAL_LINE.exec(line);
  if (!m) return undefined;
  return { step: Number(m[1]), numSteps: Number(m[2]), trainLoss: Number(m[3]), valLoss: Number(m[4]), valPpl: Number(m[5]) };
}

/** The metrics file's path follows --log-file's (<log file without .log>.metrics.jsonl). */
const WRITE_HINT = 'free space on its disk, or pass a --log-file on a writable disk with free space';

/**
 * Appends metrics records as JSON lines; a no-op on ranks other than 0. Synchronous, so nothing is
 * lost at exit. A failed write (a full disk) throws a FileError naming the file.
 */
export class MetricsLog {
  constructor(
    readonly path: string,
    private readonly enabled: boolean,
  ) {
    if (!enabled) return;
    try {
      mkdirSync(dirname(path), { recursive: true });
    } catch (e) {
      throw new FileError(`cannot create the directory of the metrics file ${path}: ${(e as Error).message}`, WRITE_HINT);
    }
  }

  append(record: MetricsRecord): void {
    if (!this.enabled) return;
    try {
      appendFileSync(this.path, `${JSON.stringify(record)}\n`);
    } catch (e) {
      throw new FileError(`cannot write the metrics file ${this.path}: ${(e as Error).message}`, WRITE_HINT);
    }
  }
}
