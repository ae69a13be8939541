/**
 * The secret of a job started by Slurm or mpirun, the same in every process of the job without
 * anyone passing it around:
 *
 *   secret = HMAC-SHA256(user key, "rosedist job secret/" + jobKey)       (64 hex digits)
 *
 * The user key is 32 random bytes in a file only the user can read: $ROSEDIST_KEY_FILE, default
 * ~/.rosedist/key (mode 600, directory 700), made on first use. jobKey names the job and step
 * (`slurm/<job id>/<step id>`, `openmpi/<jobid>/<mpirun uri>`), so two jobs never share a secret,
 * while every process of one job derives the same. A stranger on the network knows the job id but
 * not the key, so cannot compute the secret: the run's sockets refuse it as before. The home
 * directory must be the same on every node (as it is on clusters); otherwise point
 * ROSEDIST_KEY_FILE at a copy of one key on each node, or pass --secret-file.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { closeSync, linkSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { dirname, join } from 'node:path';
import type { Env } from './env_vars.js';
import { ConfigError } from './errors.js';

export const KEY_FILE_VAR = 'ROSEDIST_KEY_FILE';

/** Where the user key lives for `env`. */
export function keyFilePath(env: Env): string {
  const given = env[KEY_FILE_VAR];
  if (given !== undefined && given !== '') return given;
  return join(env.HOME || homedir(), '.rosedist', 'key');
}

/**
 * Make the key file if it is missing. Several nodes may start at once on a shared home: each
 * writes its own temporary file (mode 600) and links it into place; link(2) fails when the key
 * already exists, so exactly one wins and everyone reads the winner's key.
 */
function createKey(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${hostname()}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, `${randomBytes(32).toString('hex')}\n`);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  } finally {
    unlinkSync(tmp);
  }
}

/** The user key, made when missing; refused when others could read it. */
export function readUserKey(env: Env): string {
  const path = keyFilePath(env);
  const fail = (what: string, hint: string): never => {
    throw new ConfigError(`the rosedist key file ${path} ${what}`, hint);
  };
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
      fail(`cannot be read (${(e as NodeJS.ErrnoException).code})`, `fix its permissions, or set ${KEY_FILE_VAR}`);
    try {
      createKey(path);
      st = statSync(path);
    } catch (e2) {
      return fail(
        `is missing and cannot be made (${(e2 as NodeJS.ErrnoException).code ?? (e2 as Error).message})`,
        `make it: mkdir -p ~/.rosedist && openssl rand -hex 32 > ~/.rosedist/key && chmod 600 ~/.rosedist/key, or set ${KEY_FILE_VAR}`,
      );
    }
  }
  if (!st.isFile()) fail('is not a file', `remove it, or set ${KEY_FILE_VAR} to a file`);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid)
    fail(`belongs to uid ${st.uid}, not to you (uid ${uid})`, `use your own: set ${KEY_FILE_VAR}, or remove it to have a new one made`);
  if ((st.mode & 0o077) !== 0)
    fail(`can be read by others (mode ${(st.mode & 0o777).toString(8)})`, `chmod 600 ${path}, and make a new key if others may have read it`);
  let text = '';
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch (e) {
    fail(`cannot be read (${(e as NodeJS.ErrnoException).code})`, `fix its permissions, or set ${KEY_FILE_VAR}`);
  }
  if (text.length < 32 || /\s/.test(text)) fail('holds fewer than 32 characters, or spaces', 'put 64 random hex digits in it: openssl rand -hex 32');
  return text;
}

/** The secret of the job named `jobKey`, derived from the user key. */
export function jobSecret(env: Env, jobKey: string): string {
  return createHmac('sha256', readUserKey(env)).update(`rosedist job secret/${jobKey}`).digest('hex');
}
