/**
 * What each worker runs (torchrun's training_script with --no-python / -m), resolved once before
 * anything starts, and the command line that runs it:
 *
 *   train_ddp, x.ts, x.js, x.mjs   node [V8 flags] <tsx loader> --import shared/launcher_watch.ts PATH ARGS
 *   x.py                           PYTHON -u PATH ARGS                  (as torchrun: unbuffered)
 *   -m pkg.mod                     PYTHON -u -m pkg.mod ARGS
 *   --no-python PROG               PROG ARGS                            (a path, or a name on PATH)
 *
 * PYTHON is --python, else $PYTHON, else torchrun's $PYTHON_EXEC, else python3 on the PATH.
 * Anything else (x.rb, a folder) is a ConfigError that lists what is accepted.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, extname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError } from '../shared/errors.js';
import { packagePath, tsNodeArgs } from '../shared/runtime.js';
import type { Given } from './cli.js';

export type WorkerProgram =
  /** One of ours: a built-in program or a .js/.mjs/.ts file (absolute path). */
  | { readonly kind: 'node'; readonly path: string }
  /** A Python script (absolute path) run by `python` (absolute path of the interpreter). */
  | { readonly kind: 'python'; readonly python: string; readonly path: string }
  /** A Python module, `python -m module`. */
  | { readonly kind: 'module'; readonly python: string; readonly module: string }
  /** Any executable, run as it is (--no-python): an absolute path. */
  | { readonly kind: 'executable'; readonly path: string };

/** The built-in programs, by name → path in this package. */
export const BUILTIN_PROGRAMS: Readonly<Record<string, string>> = { train_ddp: 'worker/train_ddp.ts', train_minimal: 'worker/train_minimal.ts' };
const NODE_EXTENSIONS = new Set(['.js', '.mjs', '.cjs', '.ts', '.mts', '.cts']);

/**
 * V8 flags of the built-in programs' workers (other programs keep Node's defaults): a young
 * generation of 2 × 4 MiB semi-spaces instead of 2 × 16. It is scavenged more often, which also
 * frees sooner what a step leaves behind outside V8's heap (the ring's received messages, about
 * numParams / worldSize floats per collective, and evaluation's arrays). Measured with `npm run
 * bench:train -- --nproc 2 --zero 1`: peak RSS per worker ~45 MiB lower at the defaults and at
 * `--vocab-size 256 --n-layers 4 --seq-len 128`; forward + backward as fast (bench:backward run
 * with and without the flag, interleaved).
 */
export const BUILTIN_V8_FLAGS: readonly string[] = ['--max-semi-space-size=4'];
const BUILTIN_PATHS = new Set(Object.values(BUILTIN_PROGRAMS).map((p) => packagePath(p)));

/** The options that choose how PROGRAM runs, as given (command line or PET_*). */
export interface ProgramOptions {
  readonly noPython: Given | undefined;
  readonly module: Given | undefined;
  readonly python: Given | undefined;
}

type Env = Readonly<Record<string, string | undefined>>;

const ACCEPTED = `${Object.keys(BUILTIN_PROGRAMS).join(', ')}, a .js/.mjs/.ts or .py file, -m MODULE, or --no-python EXECUTABLE`;

/** A boolean option: absent, true/1 or false/0. */
export function isSet(g: Given | undefined): boolean {
  if (g === undefined) return false;
  const v = g.value.trim().toLowerCase();
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0' || v === '') return false;
  throw new ConfigError(`${g.from} ${JSON.stringify(g.value)} is not a yes or no`, `set ${g.from} to 1 or 0`);
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return isFile(path);
  } catch {
    return false;
  }
}

/** `name` as the shell finds it: a path (with a slash) as is, else the first executable on PATH. */
export function findExecutable(name: string, env: Env): string | undefined {
  if (name.includes('/')) return isExecutable(resolve(name)) ? resolve(name) : undefined;
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    const path = join(dir === '' ? '.' : dir, name);
    if (isExecutable(path)) return resolve(path);
  }
  return undefined;
}

/** The interpreter for Python workers: --python, $PYTHON, $PYTHON_EXEC, else python3 on the PATH. */
function python(given: Given | undefined, env: Env): string {
  const choice = given ?? ['PYTHON', 'PYTHON_EXEC'].map((n) => ({ value: env[n] ?? '', from: n })).find((g) => g.value !== '');
  const name = choice?.value ?? 'python3';
  const path = findExecutable(name, env);
  if (path !== undefined) return path;
  if (choice === undefined) {
    throw new ConfigError(
      'python3 is not on the PATH, and Python programs need it',
      'install Python 3, or name the interpreter with --python PATH or PYTHON=PATH',
    );
  }
  throw new ConfigError(
    `${choice.from} ${JSON.stringify(name)} is not an executable file`,
    `point ${choice.from} at a Python interpreter, e.g. /usr/bin/python3`,
  );
}

/** Resolve PROGRAM as the options say. Throws ConfigError with one line saying what to fix. */
export function resolveProgram(name: string | undefined, o: ProgramOptions, env: Env): WorkerProgram {
  if (name === undefined) {
    throw new ConfigError('no PROGRAM given', `usage: rosedist [options] PROGRAM [program options], PROGRAM being ${ACCEPTED}`);
  }
  const noPython = isSet(o.noPython);
  const module = isSet(o.module);
  if (noPython && module) {
    throw new ConfigError(
      `${o.noPython?.from} and ${o.module?.from} were both given`,
      'a module needs Python: drop one of them (torchrun refuses the pair too)',
    );
  }
  if (noPython && o.python !== undefined) {
    throw new ConfigError(`${o.python.from} was given with ${o.noPython?.from}`, 'drop one of them: --no-python runs the program without an interpreter');
  }
  if (module) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/.test(name)) {
      throw new ConfigError(`${o.module?.from} ${JSON.stringify(name)} is not a Python module name`, 'pass a dotted module name, e.g. -m pkg.train');
    }
    return { kind: 'module', python: python(o.python, env), module: name };
  }
  if (noPython) {
    const path = findExecutable(name, env);
    if (path !== undefined) return { kind: 'executable', path };
    const where = name.includes('/') ? `${resolve(name)} is not an executable file` : 'it is not on the PATH';
    throw new ConfigError(
      `cannot run program ${JSON.stringify(name)} with ${o.noPython?.from}: ${where}`,
      'pass an executable file (chmod +x, with a #! line) or a command on the PATH',
    );
  }
  const builtin = BUILTIN_PROGRAMS[name];
  const path = builtin !== undefined ? packagePath(builtin) : resolve(name);
  const ext = extname(path);
  const unknownKind = (): ConfigError => new ConfigError(`program ${JSON.stringify(name)} is neither a .js/.mjs/.ts nor a .py file`, `pass ${ACCEPTED}`);
  // x.rb: say what is accepted, whether or not it exists; a name without extension may be a typo.
  if (ext !== '' && ext !== '.py' && !NODE_EXTENSIONS.has(ext)) throw unknownKind();
  if (isDirectory(path)) {
    throw new ConfigError(
      `program ${JSON.stringify(name)} is a directory, not a file: ${path}`,
      `pass the path of a program file in it, PROGRAM being ${ACCEPTED}`,
    );
  }
  if (!isFile(path)) {
    throw new ConfigError(
      builtin !== undefined
        ? `built-in program ${name} is missing from this installation (${path})`
        : `program ${JSON.stringify(name)} does not exist (${path})`,
      `pass ${ACCEPTED}`,
    );
  }
  if (ext === '.py') return { kind: 'python', python: python(o.python, env), path };
  if (!NODE_EXTENSIONS.has(ext)) throw unknownKind();
  if (o.python !== undefined) {
    throw new ConfigError(`${o.python.from} was given, but ${JSON.stringify(name)} is a JavaScript/TypeScript program`, `drop ${o.python.from}: node runs it`);
  }
  return { kind: 'node', path };
}

/**
 * The command line of a worker of `program`: executable and arguments. Programs other than ours
 * have no watch preload, so, where util-linux's setpriv is on the PATH, they start through it
 * with a parent-death signal: if the launcher is killed outright (SIGKILL), the kernel sends the
 * worker SIGTERM, and no orphan keeps the run's port. setpriv execs the program: same pid, same
 * signals, nothing in between.
 */
export function programCommand(program: WorkerProgram, programArgs: readonly string[], env: Env = process.env): { command: string; args: string[] } {
  const direct = directCommand(program, programArgs);
  if (program.kind === 'node') return direct;
  const setpriv = findExecutable('setpriv', env);
  return setpriv === undefined ? direct : { command: setpriv, args: ['--pdeathsig', 'TERM', '--', direct.command, ...direct.args] };
}

function directCommand(program: WorkerProgram, programArgs: readonly string[]): { command: string; args: string[] } {
  switch (program.kind) {
    case 'node': {
      // The watch preload ends the worker when the launcher disappears and records uncaught
      // exceptions in the error file.
      const watch = pathToFileURL(packagePath('shared/launcher_watch.ts')).href;
      const v8 = BUILTIN_PATHS.has(program.path) ? BUILTIN_V8_FLAGS : [];
      return { command: process.execPath, args: [...v8, ...tsNodeArgs(), '--import', watch, program.path, ...programArgs] };
    }
    case 'python':
      return { command: program.python, args: ['-u', program.path, ...programArgs] };
    case 'module':
      return { command: program.python, args: ['-u', '-m', program.module, ...programArgs] };
    case 'executable':
      return { command: program.path, args: [...programArgs] };
    default: {
      const never: never = program;
      throw new Error(`unknown program ${JSON.stringify(never)}`);
    }
  }
}
