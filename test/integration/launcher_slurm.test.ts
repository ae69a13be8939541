/**
 * `srun` of one launcher per node, replayed on loopback: each launcher gets the variables the real
 * srun gave the launchers of `sbatch -N2 --ntasks-per-node=1` (test/fixtures/scheduler_env), with
 * the step's hosts renamed to localhost and a job id whose derived port pair is free here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { canBind } from '../../launcher/ports.js';
import { derivedPort } from '../../shared/scheduler_env.js';
import { FIXTURE, startLauncher, tempDir, waitFor, workerRecords } from '../helpers/launcher_run.js';
import { captured } from '../helpers/scheduler_fixtures.js';

/** The captured launcher environments of a fresh job on localhost, sharing the key in `keyDir`. */
async function slurmJob(keyDir: string): Promise<Record<string, string>[]> {
  for (;;) {
    const jobId = String(100_000 + Math.floor(Math.random() * 900_000));
    const port = derivedPort(`slurm/${jobId}/0`);
    if (!(await canBind('127.0.0.1', port)) || !(await canBind('127.0.0.1', port + 1))) continue;
    return captured('sbatch_launcher_per_node', keyDir).map((c) => ({
      ...c.env,
      SLURM_JOB_ID: jobId,
      SLURM_JOBID: jobId,
      SLURM_STEP_NODELIST: 'localhost,localhost',
      SLURM_NODELIST: 'localhost,localhost',
      SLURM_JOB_NODELIST: 'localhost,localhost',
    }));
  }
}

test('srun of one launcher per node forms ONE job from what Slurm says', { timeout: 90_000 }, async () => {
  const keyDir = tempDir('key');
  const out = tempDir('slurm');
  const envs = await slurmJob(keyDir);
  const runs = envs.map((env) => startLauncher(['--nproc-per-node', '2', FIXTURE, '--out', out], env));
  const results = await Promise.all(runs.map((r) => r.done));
  for (const r of results) assert.equal(r.code, 0, r.stderr);
  const records = [...workerRecords(out).values()];
  assert.deepEqual(
    records.map((r) => [r.env.RANK, r.env.LOCAL_RANK, r.env.GROUP_RANK, r.env.WORLD_SIZE, r.env.GROUP_WORLD_SIZE, r.env.MASTER_ADDR]),
    [
      ['0', '0', '0', '4', '2', 'localhost'],
      ['1', '1', '0', '4', '2', 'localhost'],
      ['2', '0', '1', '4', '2', 'localhost'],
      ['3', '1', '1', '4', '2', 'localhost'],
    ],
  );
  assert.equal(new Set(records.map((r) => r.env.ROSEDIST_SECRET)).size, 1);
  assert.equal(new Set(records.map((r) => r.env.ROSEDIST_RUN_ID)).size, 1);
  assert.match(results[0]?.stderr ?? '', /node 1 joined/);
});

test("a launcher with another user's key cannot join the job", { timeout: 60_000 }, async () => {
  const envs = await slurmJob(tempDir('key'));
  const n0 = startLauncher(['--join-timeout', '30', FIXTURE], envs[0] ?? {});
  await waitFor('node 0 to listen', () => /listens on/.test(n0.stderr()));
  const strangerEnv = { ...(envs[1] ?? {}), ROSEDIST_KEY_FILE: join(tempDir('other'), 'key') };
  const stranger = await startLauncher([FIXTURE], strangerEnv).done;
  assert.equal(stranger.code, 2);
  assert.match(stranger.stderr, /refused this launcher: authentication failed/);
  await waitFor('node 0 to log the refusal', () => /rejected a control connection .*authentication failed/.test(n0.stderr()));
  n0.child.kill('SIGINT');
  assert.equal((await n0.done).code, 130);
});
