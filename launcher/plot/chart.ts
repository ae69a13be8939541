/**
 * The picture `rosedist plot` draws, as a Vega-Lite spec built from parsed metrics files. Pure:
 * no I/O, no rendering (render.ts turns the spec into SVG/PNG).
 *
 * Two panels side by side, sharing the run colours:
 *   left:  train loss (dashed) and val loss (solid) against step, nats per predicted token;
 *   right: val perplexity against step, on a log axis when it spans a factor of 10 or more
 *          (early ppl is near the vocabulary size, late ppl is small: a linear axis flattens the end).
 */
import type { TopLevelSpec } from 'vega-lite';
import type { MetricsRecord } from '../../shared/metrics.js';

/** One metrics file: its label in the legend and its evaluations. */
export interface Run {
  readonly label: string;
  readonly records: readonly MetricsRecord[];
}

/** One point of the loss panel (long form: one row per run, step and split). */
export interface LossPoint {
  readonly run: string;
  readonly step: number;
  readonly split: 'train' | 'val';
  readonly loss: number;
}

/** One point of the perplexity panel. */
export interface PplPoint {
  readonly run: string;
  readonly step: number;
  readonly ppl: number;
}

/** Perplexity spanning at least this factor gets a log axis. */
const LOG_PPL_RATIO = 10;
/** Width and height of each panel, in CSS pixels (the PNG is rendered at 2x). */
const PANEL_W = 420;
const PANEL_H = 280;
/** Installed with the machine's fonts and resolvable by resvg; Vega only estimates text widths. */
const FONT = 'DejaVu Sans';

/**
 * Records of one run in step order. A resumed run appends evaluations that repeat steps already
 * in the file (the attempt restarted from an older checkpoint): the latest record of a step wins
 * (main.ts says which steps were repeated: `repeatedSteps`).
 */
export function stepOrdered(records: readonly MetricsRecord[]): MetricsRecord[] {
  const byStep = new Map<number, MetricsRecord>();
  for (const r of records) byStep.set(r.step, r);
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}

/** Steps evaluated more than once in `records`, ascending. */
export function repeatedSteps(records: readonly MetricsRecord[]): number[] {
  const count = new Map<number, number>();
  for (const r of records) count.set(r.step, (count.get(r.step) ?? 0) + 1);
  return [...count]
    .filter(([, n]) => n > 1)
    .map(([step]) => step)
    .sort((a, b) => a - b);
}

/** Only finite values are drawn (a NaN loss is null in the file, NaN once parsed). */
const finite = (x: number): boolean => Number.isFinite(x);

export function lossPoints(runs: readonly Run[]): LossPoint[] {
  return runs.flatMap((run) =>
    stepOrdered(run.records).flatMap((r): LossPoint[] => [
      ...(finite(r.train_loss) ? [{ run: run.label, step: r.step, split: 'train' as const, loss: r.train_loss }] : []),
      ...(finite(r.val_loss) ? [{ run: run.label, step: r.step, split: 'val' as const, loss: r.val_loss }] : []),
    ]),
  );
}

export function pplPoints(runs: readonly Run[]): PplPoint[] {
  return runs.flatMap((run) =>
    stepOrdered(run.records)
      .filter((r) => finite(r.val_ppl))
      .map((r) => ({ run: run.label, step: r.step, ppl: r.val_ppl })),
  );
}

/** Whether the perplexity axis should be logarithmic (all values positive, spanning >= 10x). */
export function useLogPpl(points: readonly PplPoint[]): boolean {
  if (points.length === 0) return false;
  const values = points.map((p) => p.ppl);
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return lo > 0 && hi / lo >= LOG_PPL_RATIO;
}

/** The Vega-Lite spec of the whole picture. Run labels must be unique (they key the colours). */
export function chartSpec(runs: readonly Run[]): TopLevelSpec {
  const labels = runs.map((r) => r.label);
  const color = {
    field: 'run',
    type: 'nominal' as const,
    title: 'run',
    scale: { domain: labels },
    legend: { orient: 'bottom' as const, direction: 'vertical' as const, labelLimit: 360, symbolType: 'stroke', symbolStrokeWidth: 3 },
  };
  const step = { field: 'step', type: 'quantitative' as const, title: 'step (optimizer steps)' };
  const ppl = pplPoints(runs);
  const logPpl = useLogPpl(ppl);
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: 'Training curves',
      subtitle: `${runs.length} run${runs.length === 1 ? '' : 's'}: ${labels.join(', ')}`,
      anchor: 'start',
      offset: 16,
    },
    background: 'white',
    padding: 12,
    config: {
      font: FONT,
      view: { stroke: '#ccc' },
      axis: { labelFontSize: 11, titleFontSize: 12, grid: true, gridColor: '#eee' },
      legend: { labelFontSize: 11, titleFontSize: 12 },
      title: { fontSize: 15, subtitleFontSize: 11, subtitleColor: '#555' },
      line: { point: { size: 18, filled: true }, strokeWidth: 2 },
    },
    hconcat: [
      {
        title: 'Train and validation loss',
        width: PANEL_W,
        height: PANEL_H,
        data: { values: lossPoints(runs) as unknown as Record<string, unknown>[] },
        mark: { type: 'line', point: true, tooltip: true },
        encoding: {
          x: step,
          y: { field: 'loss', type: 'quantitative', title: 'loss (nats/token)', scale: { zero: false } },
          color,
          strokeDash: {
            field: 'split',
            type: 'nominal',
            title: 'split',
            scale: {
              domain: ['train', 'val'],
              range: [
                [6, 3],
                [1, 0],
              ],
            },
            legend: { orient: 'bottom', direction: 'vertical', symbolType: 'stroke', symbolStrokeWidth: 2, symbolSize: 400 },
          },
          detail: { field: 'split', type: 'nominal' },
        },
      },
      {
        title: 'Validation perplexity = exp(val loss)',
        width: PANEL_W,
        height: PANEL_H,
        data: { values: ppl as unknown as Record<string, unknown>[] },
        mark: { type: 'line', point: true, tooltip: true },
        encoding: {
          x: step,
          y: {
            field: 'ppl',
            type: 'quantitative',
            title: logPpl ? 'val perplexity (log scale)' : 'val perplexity',
            scale: logPpl ? { type: 'log' } : { zero: false },
          },
          color,
        },
      },
    ],
    resolve: { scale: { color: 'shared' } },
  };
}
