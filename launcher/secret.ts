/**
 * The run's shared secret. It authenticates the launchers of a multi-node run to each other
 * (HMAC, launcher/control_channel.ts) and is handed to every worker (ROSEDIST_SECRET) for its
 * sockets. A single-node run makes a random one; the nodes of a multi-node run must share one,
 * which the user passes as --secret-file (the same file on every node) or --secret, or which,
 * under srun, every node derives from the user's key and the job (shared/job_secret.ts).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../shared/errors.js';
import type { Given } from './cli.js';

/** Shortest secret accepted from the user, in characters. */
const MIN_LENGTH = 16;

export function readSecret(secret: Given | undefined, secretFile: Given | undefined, multiNode: boolean, derive?: () => string): string {
  if (secret !== undefined && secretFile !== undefined) {
    throw new ConfigError(`both ${secret.from} and ${secretFile.from} were given`, 'pass only one of them');
  }
  let text: string | undefined;
  let from = secret?.from;
  if (secret !== undefined) text = secret.value;
  if (secretFile !== undefined) {
    from = `${secretFile.from} ${secretFile.value}`;
    try {
      text = readFileSync(secretFile.value, 'utf8').trim();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'unreadable';
      throw new ConfigError(`cannot read ${from} (${code})`, 'pass the path of a readable file holding the secret');
    }
  }
  if (text === undefined) {
    if (multiNode && derive !== undefined) return derive();
    if (multiNode) {
      throw new ConfigError(
        'a multi-node run needs a shared secret',
        'pass --secret-file FILE, the same file on every node; make one with: openssl rand -hex 32 > FILE',
      );
    }
    return randomBytes(32).toString('hex');
  }
  if (text.length < MIN_LENGTH || /\s/.test(text)) {
    throw new ConfigError(
      `the secret from ${from} is too short or contains whitespace`,
      `use at least ${MIN_LENGTH} characters without spaces, e.g. 64 random hex digits`,
    );
  }
  return text;
}
