/**
 * The scheduler variable sets captured from the real tools (test/fixtures/scheduler_env/README.md
 * says how), one file per process: <case>/<host>-rank<R>.env, KEY=VALUE lines.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from './temp_dir.js';

const ROOT = fileURLToPath(new URL('../fixtures/scheduler_env/', import.meta.url));

export interface Captured {
  /** The host the process ran on (n1, n2, vm). */
  readonly host: string;
  /** The rank the scheduler gave it (SLURM_PROCID or OMPI_COMM_WORLD_RANK). */
  readonly rank: number;
  readonly env: Record<string, string>;
}

/** Every process of `name`, by rank, each with a private key file (`keyDir`) for derived secrets. */
export function captured(name: string, keyDir = tempDir('key')): Captured[] {
  const dir = join(ROOT, name);
  return readdirSync(dir)
    .filter((f) => f.endsWith('.env'))
    .map((f) => {
      const m = /^(.+)-rank(\d+)\.env$/.exec(f);
      if (m === null) throw new Error(`unexpected fixture name ${f}`);
      const env: Record<string, string> = { ROSEDIST_KEY_FILE: join(keyDir, 'key') };
      for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
        const eq = line.indexOf('=');
        if (eq > 0) env[line.slice(0, eq)] = line.slice(eq + 1);
      }
      return { host: m[1] as string, rank: Number(m[2]), env };
    })
    .sort((a, b) => a.rank - b.rank);
}
