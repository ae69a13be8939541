import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { jobSecret, keyFilePath } from '../../shared/job_secret.js';
import { ConfigError } from '../../shared/errors.js';
import { tempDir } from '../helpers/temp_dir.js';

const run = promisify(execFile);
const dir = (): string => tempDir('key');

test('the key is made on first use, private, and gives each job its own secret', () => {
  const home = dir();
  const env = { HOME: home };
  assert.equal(keyFilePath(env), join(home, '.rosedist', 'key'));
  const a = jobSecret(env, 'slurm/7/0');
  assert.match(a, /^[0-9a-f]{64}$/);
  assert.equal(statSync(join(home, '.rosedist', 'key')).mode & 0o777, 0o600);
  assert.equal(statSync(join(home, '.rosedist')).mode & 0o777, 0o700);
  assert.deepEqual(readdirSync(join(home, '.rosedist')), ['key'], 'no temporary file left');
  assert.equal(jobSecret(env, 'slurm/7/0'), a, 'the same job derives the same secret');
  assert.notEqual(jobSecret(env, 'slurm/7/1'), a, 'another step, another secret');
  assert.notEqual(jobSecret({ HOME: dir() }, 'slurm/7/0'), a, "another user's key, another secret");
});

test('processes starting at once on a shared home all end up with the one key', async () => {
  const key = join(dir(), 'sub', 'key');
  const code = "import('./shared/job_secret.ts').then((m) => process.stdout.write(m.jobSecret(process.env, 'slurm/9/0')))";
  const outs = await Promise.all(
    Array.from({ length: 6 }, () => run(process.execPath, ['--import', 'tsx', '-e', code], { env: { ...process.env, ROSEDIST_KEY_FILE: key } })),
  );
  const secrets = new Set(outs.map((o) => o.stdout));
  assert.equal(secrets.size, 1, [...secrets].join(' '));
  assert.match([...secrets][0] ?? '', /^[0-9a-f]{64}$/);
});

test('a key others could read, a short key or a foreign key is refused with a fix', () => {
  const key = join(dir(), 'key');
  const env = { ROSEDIST_KEY_FILE: key };
  writeFileSync(key, 'f'.repeat(64), { mode: 0o644 });
  chmodSync(key, 0o644);
  assert.throws(
    () => jobSecret(env, 'j'),
    (e: unknown) => e instanceof ConfigError && /can be read by others \(mode 644\)/.test(e.message) && /chmod 600/.test(e.hint ?? ''),
  );
  chmodSync(key, 0o600);
  writeFileSync(key, 'short');
  assert.throws(() => jobSecret(env, 'j'), /fewer than 32 characters/);
  writeFileSync(key, 'f'.repeat(64));
  assert.match(jobSecret(env, 'j'), /^[0-9a-f]{64}$/);
  if (process.getuid?.() === 0) {
    chownSync(key, 4321, 4321);
    assert.throws(() => jobSecret(env, 'j'), /belongs to uid 4321/);
  }
});
