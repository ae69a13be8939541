/**
 * The metrics file: one JSON object per line, one line per evaluation, written by rank 0
 * (`logs/<program>.metrics.jsonl`) and read by `rosedist plot` and the benchmarks.
 */

/** One evaluation. Losses in nats per predicted token; `val_ppl = exp(val_loss)`. */
export interface MetricsRecord {
  readonly step: number;
  /** Mean over ranks of the training loss of the last optimizer step. */
  readonly train_loss: number;
  readonly val_loss: number;
  readonly val_ppl: number;
  /** Tokens predicted in the validation split (each counted once over all ranks). */
  readonly val_tokens: number;
  /** Training tokens processed so far, all ranks together. */
  readonly tokens_seen: number;
  /** Seconds since the start of training (this attempt). */
  readonly elapsed_s: number;
  readonly world_size: number;
  readonly backend: string;
  /** Optional run label (set by the trainer; plot uses the file name otherwise). */
  readonly run_id?: string;
}

const NUMERIC = ['step', 'train_loss', 'val_loss', 'val_ppl', 'val_tokens', 'tokens_seen', 'elapsed_s', 'world_size'] as const;

/** Validate one parsed line; returns a description of what is wrong, or undefined if valid. */
export function metricsRecordProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not a JSON object';
  const r = value as Record<string, unknown>;
  for (const key of NUMERIC) {
    if (typeof r[key] !== 'number') return `field "${key}" is missing or not a number`;
  }
  if (typeof r.backend !== 'string') return 'field "backend" is missing or not a string';
  return undefined;
}

/** Parse a metrics file's text; throws an Error naming the line and field at the first bad line. */
export function parseMetrics(text: string, source = 'metrics file'): MetricsRecord[] {
  const rows: MetricsRecord[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw new Error(`${source}:${i + 1}: not valid JSON`);
    }
    const problem = metricsRecordProblem(value);
    if (problem) throw new Error(`${source}:${i + 1}: ${problem}`);
    rows.push(value as MetricsRecord);
  });
  return rows;
}
