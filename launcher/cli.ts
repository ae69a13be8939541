/**
 * The command line, parsed once at the edge (the launcher's only yargs use):
 *
 *   rosedist [launcher options] PROGRAM [program options]
 *
 * PROGRAM: one of ours (train_ddp, a .js/.mjs/.ts file), a Python script (.py), a Python module
 * with -m, or any executable with --no-python (launcher/program.ts resolves it).
 * Parsing stops at PROGRAM; everything after it goes to the program untouched. Options are spelled
 * as torchrun spells them (`--nproc-per-node` and `--nproc_per_node` both work), and each can come
 * from `PET_<NAME>` (e.g. PET_NPROC_PER_NODE) as torchrun reads them; the command line wins.
 * The result is raw text with its source; launcher/config.ts validates it.
 */
import { ConfigError } from '../shared/errors.js';
import { yargs } from '../shared/yargs.js';

/** An option's text and where it came from ("--nproc-per-node" or "PET_NPROC_PER_NODE"), for error messages. */
export interface Given {
  readonly value: string;
  readonly from: string;
}

/** The launcher options, each as its own flag name; the help text says what each does. */
const OPTIONS = {
  'nproc-per-node': 'workers on this node: a number, auto (GPUs if any, else CPUs), cpu or gpu [default: 1]',
  nnodes:
    "number of nodes, or MIN:MAX for an elastic run (starts with MIN, admits up to MAX, goes on when nodes leave or join) [default: 1; under srun: the step's nodes]",
  'node-rank': 'rank of this node, 0 ≤ node-rank < nnodes [default: 0; under srun: SLURM_NODEID]',
  'master-addr': "address of node 0; its rank-0 worker listens there [default: 127.0.0.1; under srun: the step's first host]",
  'master-port':
    'port of rank 0 [default: a free port on one node, 29500 on several, one derived from the job id under srun; node 0 also listens on master-port + 1 for the launchers]',
  standalone: 'single-node run on a free local port (torchrun compatibility)',
  'max-restarts': 'restart the whole group up to this many times after a failure [default: 0]',
  'monitor-interval': "seconds between checks of the workers; a worker's exit is noticed at once whatever the interval [default: 0.1]",
  'run-id': 'name of the run (letters, digits, . _ -) [default: random]',
  'log-dir': 'directory for <run-id>/attempt_<n>/<rank>/{stdout,stderr}.log and error.json (<run-id>_1, _2, ... when the run id was used before)',
  redirects: 'send worker streams to files only: 0 none, 1 stdout, 2 stderr, 3 both, or per local rank "0:1,1:2" [default: 0]',
  tee: 'copy worker streams to files and the console, values as --redirects [default: 0]',
  'local-ranks-filter': 'comma-separated local ranks whose output is shown on the console [default: all]',
  secret: 'shared secret of a multi-node run (visible in ps: prefer --secret-file)',
  'secret-file': 'file holding the shared secret of a multi-node run (the same file on every node) [under srun: derived from ~/.rosedist/key and the job]',
  'join-timeout': 'seconds to wait for all nodes to join a multi-node run; 0 or inf: wait forever [default: 300]',
  'rdzv-timeout': 'elastic runs: seconds a rendezvous round waits for MIN nodes before the run fails [default: 900, as torchrun]',
  'rdzv-last-call': 'elastic runs: seconds a round waits for more nodes once MIN are there (MAX ends the wait at once) [default: 30, as torchrun]',
  'no-python': 'run PROGRAM as an executable, without an interpreter (torchrun compatibility)',
  module: 'PROGRAM is a Python module, run as python -m PROGRAM (torchrun compatibility)',
  python: 'Python interpreter for .py programs and -m [default: $PYTHON, else $PYTHON_EXEC, else python3 on the PATH]',
} as const;

export type OptionName = keyof typeof OPTIONS;

export interface CliInput {
  /** Only the options that were given (command line or PET_*). */
  readonly options: Readonly<Partial<Record<OptionName, Given>>>;
  /** The program as typed: a built-in name or a path; undefined: none given. */
  readonly program: string | undefined;
  readonly programArgs: readonly string[];
  readonly help: boolean;
}

const BOOLEAN: ReadonlySet<OptionName> = new Set(['standalone', 'no-python', 'module']);
/** Short spellings, as torchrun's. */
const SHORT: Readonly<Partial<Record<OptionName, string>>> = { module: 'm' };

function parser(argv: readonly string[]) {
  let y = yargs([...argv])
    .scriptName('rosedist')
    .usage(
      '$0 [launcher options] PROGRAM [program options]\n\nPROGRAM: train_ddp, train_minimal, a .js/.mjs/.ts or .py file, -m MODULE, or --no-python EXECUTABLE.\nEach option can also be set as PET_<NAME>, e.g. PET_NPROC_PER_NODE=2.',
    )
    .parserConfiguration({ 'halt-at-non-option': true, 'parse-positional-numbers': false, 'camel-case-expansion': false, 'boolean-negation': false })
    .strict()
    .help(false)
    .version(false)
    .exitProcess(false)
    .fail((msg, err) => {
      throw err ?? new ConfigError(unknownOption(msg), 'run rosedist --help for the options');
    })
    .option('help', { alias: 'h', type: 'boolean', describe: 'show this help' });
  for (const [name, describe] of Object.entries(OPTIONS)) {
    const short = SHORT[name as OptionName];
    const alias = [...(name.includes('-') ? [name.replaceAll('-', '_')] : []), ...(short !== undefined ? [short] : [])];
    y = y.option(name, { type: BOOLEAN.has(name as OptionName) ? 'boolean' : 'string', describe, alias });
  }
  return y;
}

/** yargs says "Unknown argument: foo"; we say which option and how to go on. */
function unknownOption(msg: string): string {
  const m = /^Unknown arguments?: (.*)$/.exec(msg);
  if (m === null) return msg;
  const names = (m[1] ?? '').split(', ').map((n) => (n.length === 1 ? `-${n}` : `--${n}`));
  return `unknown option ${names.join(', ')}`;
}

/** The help text. */
export function usage(): Promise<string> {
  return parser([]).getHelp();
}

/** Parse `argv` (without node and script) with `env` for PET_* fallbacks. Throws ConfigError. */
export function parseCli(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): CliInput {
  const parsed = parser(argv).parseSync() as Record<string, unknown> & { _: string[] };
  const options: Partial<Record<OptionName, Given>> = {};
  for (const name of Object.keys(OPTIONS) as OptionName[]) {
    const value = parsed[name];
    const flag = `--${name}`;
    if (Array.isArray(value)) throw new ConfigError(`${flag} was given more than once`, `pass ${flag} once`);
    if (value !== undefined) {
      options[name] = { value: String(value), from: flag };
      continue;
    }
    const pet = `PET_${name.toUpperCase().replaceAll('-', '_')}`;
    const fromEnv = env[pet];
    if (fromEnv !== undefined && fromEnv !== '') options[name] = { value: fromEnv, from: pet };
  }
  // After PROGRAM, yargs keeps the words as they were: they are the tail of argv.
  const rest = parsed._.map(String);
  const programIndex = argv.length - rest.length;
  const program = rest.length > 0 ? argv[programIndex] : undefined;
  return {
    options,
    program,
    programArgs: program === undefined ? [] : argv.slice(programIndex + 1),
    help: parsed.help === true,
  };
}
