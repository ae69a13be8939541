/**
 * The files a run writes (rank 0): the text log, the metrics file, the checkpoint and the trace of
 * --profile. `checkOutputPaths` looks at them all before training starts, so that a path that can
 * never be written fails at once, with one line naming the flag, the path and the fix, instead of
 * after the whole run (a log that is a directory), as a stack trace (a directory on the way that is
 * a file), or not at all (the checkpoint and the log on the same file: one overwrites the other).
 * It writes nothing; a failure while writing later (a full disk) is reported where it happens.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { basename, dirname, resolve, sep } from 'node:path';
import { ConfigError } from '../shared/errors.js';
import { attachLogFile, type Logger } from '../shared/logging.js';
import type { ProcessGroup } from './comm/process_group.js';
import type { TrainConfig } from './config.js';
import { rootDecides } from './ddp.js';
import { OutputLock } from './output_lock.js';

export interface OutputPath {
  /** The flag that names it, e.g. "--log-file"; the metrics file is "--log-file's metrics file". */
  readonly flag: string;
  /** What it is, for messages ("log file"). */
  readonly what: string;
  readonly path: string;
}

/** Every file the run's rank 0 may write, in the order they are checked. */
export function outputPaths(cfg: TrainConfig): OutputPath[] {
  const out: OutputPath[] = [
    { flag: '--log-file', what: 'log file', path: cfg.logFile },
    { flag: 'the metrics file of --log-file', what: 'metrics file', path: cfg.metricsFile },
    { flag: '--checkpoint-path', what: 'checkpoint', path: cfg.checkpointPath },
  ];
  if (cfg.profile !== null) out.push({ flag: '--profile', what: 'trace', path: cfg.profile });
  return out;
}

function statOrUndefined(path: string): ReturnType<typeof statSync> | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

/** A file name to suggest inside a directory the user named instead of a file. */
function suggestedName(o: OutputPath): string {
  if (o.what === 'checkpoint') return 'ckpt.safetensors';
  if (o.what === 'trace') return 'trace.json';
  return 'train.log';
}

/** One path: not a directory, every existing ancestor a directory, the place writable. */
function checkOne(o: OutputPath): void {
  const { flag, path } = o;
  if (path.endsWith(sep) || path.endsWith('/') || basename(path) === '.' || basename(path) === '..') {
    throw new ConfigError(`${flag} ${path} names a directory, not a ${o.what}`, `name a file, e.g. ${flag} ${resolve(path, suggestedName(o))}`);
  }
  const st = statOrUndefined(path);
  if (st?.isDirectory()) {
    throw new ConfigError(`${flag} ${path} is a directory, not a ${o.what}`, `name a file, e.g. ${flag} ${resolve(path, suggestedName(o))}`);
  }
  // The nearest existing ancestor must be a directory we may write into (mkdir -p does the rest).
  let dir = dirname(resolve(path));
  let dirSt = statOrUndefined(dir);
  while (dirSt === undefined && dirname(dir) !== dir) {
    dir = dirname(dir);
    dirSt = statOrUndefined(dir);
  }
  if (dirSt !== undefined && !dirSt.isDirectory()) {
    throw new ConfigError(`${flag} ${path}: ${dir} is a file, not a directory`, `pick a ${flag} whose directories are directories, or move ${dir} away`);
  }
  const target = st !== undefined ? path : dir;
  try {
    accessSync(target, constants.W_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'not writable';
    throw new ConfigError(`${flag} ${path}: ${target} is not writable (${code})`, `pick a ${flag} in a directory you may write to`);
  }
}

/**
 * Throws a ConfigError for the first output path that cannot be written, or for two outputs on the
 * same file. Run it on the rank that writes them (rank 0) before anything is written. With
 * --tolerate-checkpoint-errors a checkpoint path that cannot be written is not an error: resolves
 * with the problem (training goes on, and each save warns), else with undefined.
 */
export function checkOutputPaths(cfg: TrainConfig): string | undefined {
  const outputs = outputPaths(cfg);
  let tolerated: string | undefined;
  for (const o of outputs) {
    try {
      checkOne(o);
    } catch (e) {
      if (!(o.what === 'checkpoint' && cfg.tolerateCheckpointErrors && e instanceof ConfigError)) throw e;
      tolerated = e.message;
    }
  }
  const seen = new Map<string, OutputPath>();
  for (const o of outputs) {
    const key = resolve(o.path);
    const first = seen.get(key);
    if (first !== undefined) {
      throw new ConfigError(
        `${o.flag} and ${first.flag} are the same file (${o.path}): the ${o.what} would overwrite the ${first.what}`,
        `give each its own path, e.g. --log-file ${resolve(dirname(key), 'train.log')} --checkpoint-path ${resolve(dirname(key), 'ckpt.safetensors')}`,
      );
    }
    seen.set(key, o);
  }
  return tolerated;
}

/**
 * Collective, before anything is written: rank 0 checks the output paths (checkOutputPaths), locks
 * the log and the checkpoint (output_lock.ts) and attaches the log file to `logger`; every rank
 * learns the outcome (rank 0's ConfigError stops them all). Resolves with rank 0's lock (release it
 * at the end), undefined on the other ranks.
 */
export async function claimOutputs(pg: ProcessGroup, cfg: TrainConfig, runId: string, logger: Logger): Promise<OutputLock | undefined> {
  let lock: OutputLock | undefined;
  await rootDecides(pg, () => {
    const checkpointProblem = checkOutputPaths(cfg);
    if (checkpointProblem !== undefined) {
      logger.warn(`${checkpointProblem}: no checkpoint will be saved; training goes on (--tolerate-checkpoint-errors)`);
    }
    lock = OutputLock.acquire(
      [{ flag: '--log-file', path: cfg.logFile }, ...(checkpointProblem === undefined ? [{ flag: '--checkpoint-path', path: cfg.checkpointPath }] : [])],
      runId,
      (line) => logger.warn(line),
    );
    try {
      attachLogFile(logger, cfg.logFile);
    } catch (e) {
      lock.release();
      lock = undefined;
      throw e;
    }
    return null;
  });
  return lock;
}
