/**
 * `rosedist plot <metrics.jsonl>... [-o file.svg|file.png]`: train/val loss and val perplexity
 * against step, several runs overlaid, to an SVG or PNG file (default plot.svg).
 *
 * `runPlot` takes the arguments after `plot` and returns the exit code instead of exiting:
 * 0 written; 2 bad input (flag, missing/empty/damaged file, unknown picture type), reported as one
 * line on stderr that names the file (and line) and the fix; 1 anything unexpected.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, extname } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError, RosedistError, exitCodeOf, formatError } from '../../shared/errors.js';
import { parseMetrics } from '../../shared/metrics.js';
import { hideBin, yargs } from '../../shared/yargs.js';
import { chartSpec, type Run } from './chart.js';
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
    .command('$0 <metrics..>', false, (y) =>
      y.positional('metrics', { type: 'string', array: true, describe: 'metrics.jsonl files written by runs' }),
    )
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

/** Label of a run: its run_id, else the file name without `.metrics.jsonl` / `.jsonl`. */
function runLabel(file: string, runId: string | undefined): string {
  if (runId) return runId;
  return basename(file).replace(/(\.metrics)?\.jsonl$/, '');
}

/** Read and validate one metrics file; every problem is a ConfigError naming the file. */
async function loadRun(file: string): Promise<Run> {
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
    throw new ConfigError((e as Error).message, 'each line must be one JSON metrics record as the trainer writes it (shared/metrics.ts); fix or delete that line');
  }
  if (records.length === 0) {
    throw new ConfigError(`${file}: no evaluations in the file`, 'a run writes its first line at its first evaluation; wait for it or pass another file');
  }
  return { label: runLabel(file, records.find((r) => r.run_id)?.run_id), records };
}

/** Labels key the colours: the second file with a taken label gets its path appended. */
function uniqueLabels(runs: Run[], files: readonly string[]): Run[] {
  const seen = new Set<string>();
  return runs.map((run, i) => {
    let label = run.label;
    if (seen.has(label)) label = `${label} (${files[i]})`;
    for (let n = 2; seen.has(label); n += 1) label = `${run.label} #${n}`;
    seen.add(label);
    return { ...run, label };
  });
}

/** Write the picture; resolves to the number of evaluations drawn. */
export async function plotFiles(args: PlotArgs): Promise<number> {
  const runs = uniqueLabels(await Promise.all(args.files.map(loadRun)), args.files);
  const svg = await renderSvg(chartSpec(runs));
  const bytes = args.format === 'svg' ? svg : svgToPng(svg);
  try {
    await mkdir(dirname(args.output), { recursive: true });
    await writeFile(args.output, bytes);
  } catch (e) {
    throw new RosedistError(`${args.output}: cannot write (${(e as NodeJS.ErrnoException).code ?? String(e)})`, 'pick a writable path with -o');
  }
  return runs.reduce((n, r) => n + r.records.length, 0);
}

/** Entry of `rosedist plot`; `argv` is what follows `plot`. Never exits the process. */
export async function runPlot(argv: string[], io: PlotIO = consoleIO): Promise<number> {
  try {
    const args = await parseArgs(argv, io);
    if (!args) return 0;
    const n = await plotFiles(args);
    io.out(`wrote ${args.output} (${args.files.length} run${args.files.length === 1 ? '' : 's'}, ${n} evaluations)`);
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
