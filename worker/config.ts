/**
 * The training programs' options: parsed once, at the edge, into a frozen `TrainConfig`.
 *
 * Flags are kebab-case with the Python original's names and defaults (argparse), plus ours.
 * Parsing is strict: an unknown flag, a value of the wrong type, a non-positive size, or options
 * that contradict each other raise a ConfigError naming the flag and the fix. Numbers are read as
 * strings and converted here, because yargs turns `--batch-size abc` into null and a bare
 * `--batch-size` into its default.
 *
 * This module is what callers import: the parser is here, and it re-exports the types, the usage
 * text and flag names (from the option table, config_options.ts) and the derived views
 * (config_views.ts). The cross-field rules are in config_rules.ts.
 */
import { ConfigError } from '../shared/errors.js';
import { parseSeconds } from '../shared/timers.js';
import { yargs } from '../shared/yargs.js';
import { defaultOf, OPTIONS, type OptionKey, type OptionSpec, type ProgramName, type TrainConfig } from './config_options.js';
import { checkDatasetOptions, resolveOverlap, validate } from './config_rules.js';

export { flagOf, trainUsage, wantsHelp, type GradCompression, type LogFormat, type ProgramName, type TrainConfig } from './config_options.js';
export { allReduceTopologyOf, gptConfigOf, MODEL_SHAPE_FIELDS, tensorParallelSizeOf } from './config_views.js';

/**
 * yargs reads `--drop-last=<anything>` as false unless it says "true": refuse values that are not
 * true or false (a bare flag, `--no-<flag>`, or `--<flag>=true|false` are the ways to write one).
 */
function checkBooleanValues(argv: readonly string[]): void {
  for (const spec of Object.values(OPTIONS as Record<OptionKey, OptionSpec>)) {
    if (spec.kind !== 'bool') continue;
    for (const name of [spec.flag, `no-${spec.flag}`]) {
      const prefix = `--${name}=`;
      const given = argv.find((a) => a.startsWith(prefix));
      const value = given?.slice(prefix.length);
      if (value !== undefined && value !== 'true' && value !== 'false') {
        throw new ConfigError(`--${name}=${value} is not true or false`, `write --${spec.flag} or --no-${spec.flag}`);
      }
    }
  }
}

function convert(spec: OptionSpec, raw: unknown): number | string | boolean {
  const flag = `--${spec.flag}`;
  if (spec.kind === 'bool') return raw as boolean;
  const text = typeof raw === 'number' ? String(raw) : (raw as string);
  if (text === '') throw new ConfigError(`${flag} needs a value`, `write ${flag} <value>`);
  if (spec.kind === 'string') {
    if (spec.choices && !spec.choices.includes(text)) {
      throw new ConfigError(`${flag} ${text} is not one of ${spec.choices.join(', ')}`, `pass ${flag} ${spec.choices[0]}`);
    }
    return text;
  }
  if (spec.kind === 'seconds') {
    const s = parseSeconds(text);
    if (!(s >= 0))
      throw new ConfigError(
        `${flag} ${JSON.stringify(text)} is not a number of seconds`,
        `pass seconds, e.g. ${flag} ${String(spec.default)}, or ${flag} inf for no timeout`,
      );
    // Infinity is stored as 0 (JSON has no Infinity; the resolved config is logged and checkpointed).
    return s === Infinity ? 0 : s;
  }
  const n = Number(text);
  if (!Number.isFinite(n) || text.trim() === '') {
    throw new ConfigError(`${flag} ${JSON.stringify(text)} is not a number`, `pass a number, e.g. ${flag} ${String(spec.default)}`);
  }
  if (spec.kind === 'float') return n;
  if (!Number.isSafeInteger(n)) throw new ConfigError(`${flag} ${text} is not an integer`, `pass a whole number to ${flag}`);
  const min = spec.min ?? (spec.kind === 'posint' ? 1 : 0);
  const max = spec.max ?? 0xffffffff;
  if (n < min) throw new ConfigError(`${flag} ${text} must be at least ${min}`, `pass ${flag} ${min} or more`);
  if (n > max) throw new ConfigError(`${flag} ${text} is more than ${max}`, `pass ${flag} ${max} or less`);
  return n;
}

/**
 * `--lr -1e-3` as `--lr=-1e-3`: yargs takes a negative number for a value only in plain decimal
 * form (-1, -0.5) and splits "-1e-3" into the short flags -1, -e, -3, so a negative value in
 * exponent form would be misread as unknown options instead of getting its range check. No flag
 * of ours starts with a digit, so a token "-<number>" after "--name" is always that flag's value.
 */
function joinSignedValues(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = argv[i + 1];
    if (/^--[^=]+$/.test(a) && next !== undefined && /^-(\d|\.\d)/.test(next) && Number.isFinite(Number(next))) {
      out.push(`${a}=${next}`);
      i += 1;
    } else {
      out.push(a);
    }
  }
  return out;
}

/** Parse a training program's flags (argv without node and the script). Throws ConfigError. */
export function parseTrainConfig(argv: readonly string[], program: ProgramName): TrainConfig {
  let parser = yargs(joinSignedValues(argv))
    .strict()
    .help(false)
    .version(false)
    .exitProcess(false)
    .parserConfiguration({ 'duplicate-arguments-array': false })
    .fail((msg: string | null, err?: Error) => {
      const unknown = /^Unknown arguments?: (.*)$/.exec(msg ?? '');
      if (unknown) {
        const written = (n: string) => argv.some((a) => a === `--${n}` || a.startsWith(`--${n}=`) || a === `-${n}`);
        const names = unknown[1].split(', ').map((n) => (written(n) ? `--${n}` : n));
        throw new ConfigError(`unknown option ${names.join(', ')} for ${program}`, 'run with --help to list the options');
      }
      throw new ConfigError(`bad options for ${program}: ${msg ?? err?.message ?? 'unknown error'}`, 'run with --help to list the options');
    });
  for (const spec of Object.values(OPTIONS as Record<OptionKey, OptionSpec>)) {
    parser = parser.option(spec.flag, { type: spec.kind === 'bool' ? 'boolean' : 'string' });
  }
  checkBooleanValues(argv);
  const parsed = parser.parseSync() as Record<string, unknown>;
  if (parsed._ instanceof Array && parsed._.length > 0) {
    throw new ConfigError(`unexpected argument ${String(parsed._[0])} for ${program}`, 'options are written --name value; run with --help');
  }
  const values: Record<string, unknown> = { program };
  for (const [key, spec] of Object.entries(OPTIONS as Record<OptionKey, OptionSpec>)) {
    const raw = parsed[spec.flag];
    values[key] = raw === undefined ? defaultOf(spec, program) : convert(spec, raw);
  }
  resolveOverlap(values, parsed.overlap !== undefined);
  const logFile = values.logFile as string;
  values.metricsFile = `${logFile.replace(/\.log$/, '')}.metrics.jsonl`;
  const config = Object.freeze(values) as unknown as TrainConfig;
  validate(config);
  checkDatasetOptions(config, (flag) => parsed[flag] !== undefined);
  return config;
}
