/**
 * `rosedist plot <metrics.jsonl>... [-o file.svg|file.png]`: train/val loss and val perplexity
 * against step, several runs overlaid, to an SVG or PNG file (default plot.svg). A run is a
 * run_id: a file that several runs appended to is drawn as several runs; repeated steps of one run
 * (a restarted attempt) and non-finite losses are named in a note line.
 *
 * `runPlot` takes the arguments after `plot` and returns the exit code instead of exiting:
 * 0 written; 2 bad input (flag, missing/empty/damaged file, unknown picture type), reported as one
 * line on stderr that names the file (and line) and the fix; 1 anything unexpected.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, extname } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError, RosedistError, exitCodeOf, formatError } from '../../shared/errors.js';
import { parseMetrics, type MetricsRecord } from '../../shared/metrics.js';
import { hideBin, yargs } from '../../shared/yargs.js';
import { chartSpec, repeatedSteps, type Run } from './chart.js';
import { renderSvg, svgToPng } from './render.js';

/** Where runPlot prints (tests capture it). */
export interface PlotIO {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
}

const consoleIO: PlotIO = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

export interface PlotArgs {
  readonly files: readonly string[];
  readonly output: string;
  readonly format: 'svg' | 'png';
}

const USAGE = 'rosedist plot <metrics.jsonl>... [-o file.svg|file.png]';

/** Parse the arguments after `plot`. Resolves undefined when help was printed instead. */
async function parseArgs(argv: readonly string[], io: PlotIO): Promise<PlotArgs | undefined> {
  let helpText: string | undefined;
  const parsed = await yargs([...argv])
    .scriptName('rosedist plot')
    .usage(`${USAGE}\n\nDraw train/val loss and val perplexity against step for one or more metrics files.`)
    .command('$0 <metrics..>', false, (y) => y.positional('metrics', { type: 'string', array: true, describe: 'metrics.jsonl files written by runs' }))
    .option('output', { alias: 'o', type: 'string', default: 'plot.svg', describe: 'picture to write: .svg or .png' })
    .strict()
    .version(false)
    .help()
    .exitProcess(false)
    .fail((msg: string | undefined, err: Error | undefined) => {
      throw new ConfigError(`rosedist plot: ${msg ?? err?.message ?? 'bad arguments'}`, `usage: ${USAGE}`);
    })
    .parseAsync([...argv], {}, (_err: unknown, _argv: unknown, output: string) => {
      if (output) helpText = output;
    });
  if (parsed.help) {
    if (helpText) io.out(helpText);
    return undefined;
  }
  const files = ((parsed.metrics as unknown[] | undefined) ?? []).map(String);
  if (files.length === 0) throw new ConfigError('rosedist plot: no metrics file given', `usage: ${USAGE}`);
  const output = parsed.output;
  const ext = extname(output).toLowerCase();
  if (ext !== '.svg' && ext !== '.png') {
    throw new ConfigError(`-o ${output}: unknown picture type "${ext || '(none)'}"`, 'end the file name in .svg or .png');
  }
  return { files, output, format: ext === '.svg' ? 'svg' : 'png' };
}

/** The label of a file's records without a run_id (older files): the file name without `.metrics.jsonl` / `.jsonl`. */
function fileLabel(file: string): string {
  return basename(file).replace(/(\.metrics)?\.jsonl$/, '');
}

/** Read and validate one metrics file; every problem is a ConfigError naming the file. */
async function readRecords(file: string): Promise<MetricsRecord[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const what = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : `cannot read (${code ?? String(e)})`;
    throw new ConfigError(`${file}: ${what}`, 'pass a metrics file written by a run, e.g. logs/<program>.metrics.jsonl');
  }
  let records;
  try {
    records = parseMetrics(text, file);
  } catch (e) {
    throw new ConfigError(
      (e as Error).message,
      'each line must be one JSON metrics record as the trainer writes it (shared/metrics.ts); fix or delete that line',
    );
  }
  if (records.length === 0) {
    throw new ConfigError(`${file}: no evaluations in the file`, 'a run writes its first line at its first evaluation; wait for it or pass another file');
  }
  return records;
}

/** A file's runs: one per run_id, in order of first appearance (a reused log file appends runs). */
function splitRuns(file: string, records: readonly MetricsRecord[]): (Run & { file: string })[] {
  const byRun = new Map<string | undefined, MetricsRecord[]>();
  for (const r of records) {
    const list = byRun.get(r.run_id) ?? [];
    list.push(r);
    byRun.set(r.run_id, list);
  }
  return [...byRun].map(([runId, list]) => ({ label: runId ?? fileLabel(file), records: list, file }));
}

/** Labels key the colours: a run whose label is taken gets its file appended. */
function uniqueLabels(runs: readonly (Run & { file: string })[]): Run[] {
  const seen = new Set<string>();
  return runs.map((run) => {
    let label = run.label;
    if (seen.has(label)) label = `${label} (${run.file})`;
    for (let n = 2; seen.has(label); n += 1) label = `${run.label} #${n}`;
    seen.add(label);
    return { label, records: run.records };
  });
}

/** What the picture leaves out or merges, one line each: repeated steps, non-finite losses. */
function notes(runs: readonly Run[]): string[] {
  const lines: string[] = [];
  for (const run of runs) {
    const repeated = repeatedSteps(run.records);
    if (repeated.length > 0) {
      lines.push(
        `note: run ${run.label} evaluated step${repeated.length === 1 ? '' : 's'} ${repeated.join(', ')} more than once ` +
          '(a restarted attempt resumed from an earlier checkpoint): the latest record of each is drawn',
      );
    }
    const nonFinite = run.records.filter((r) => !Number.isFinite(r.train_loss) || !Number.isFinite(r.val_loss)).map((r) => r.step);
    if (nonFinite.length > 0)
      lines.push(`note: run ${run.label} has non-finite losses at step${nonFinite.length === 1 ? '' : 's'} ${nonFinite.join(', ')}: not drawn`);
  }
  return lines;
}

/** Write the picture; resolves to the runs drawn, their evaluations, and notes on what was merged or left out. */
export async function plotFiles(args: PlotArgs): Promise<{ runs: number; evaluations: number; notes: string[] }> {
  const perFile = await Promise.all(args.files.map(async (f) => splitRuns(f, await readRecords(f))));
  const runs = uniqueLabels(perFile.flat());
  const svg = await renderSvg(chartSpec(runs));
  const bytes = args.format === 'svg' ? svg : svgToPng(svg);
  try {
    await mkdir(dirname(args.output), { recursive: true });
    await writeFile(args.output, bytes);
  } catch (e) {
    throw new RosedistError(`${args.output}: cannot write (${(e as NodeJS.ErrnoException).code ?? String(e)})`, 'pick a writable path with -o');
  }
  return { runs: runs.length, evaluations: runs.reduce((n, r) => n + r.records.length, 0), notes: notes(runs) };
}

/** Entry of `rosedist plot`; `argv` is what follows `plot`. Never exits the process. */
export async function runPlot(argv: string[], io: PlotIO = consoleIO): Promise<number> {
  try {
    const args = await parseArgs(argv, io);
    if (!args) return 0;
    const drawn = await plotFiles(args);
    io.out(`wrote ${args.output} (${drawn.runs} run${drawn.runs === 1 ? '' : 's'}, ${drawn.evaluations} evaluations)`);
    for (const line of drawn.notes) io.out(line);
    return 0;
  } catch (e) {
    io.err(formatError(e));
    return exitCodeOf(e);
  }
}

// Run directly (`node --import tsx launcher/plot/main.ts ...`) as well as through the launcher.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await runPlot(hideBin(process.argv));
}
