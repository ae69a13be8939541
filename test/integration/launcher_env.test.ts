import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { countGpus } from '../../launcher/devices.js';
import { readWorkerEnv, type WorkerEnv } from '../../shared/env.js';
import { FIXTURE, startLauncher, tempDir, workerRecords } from '../helpers/launcher_run.js';
import { freePort } from '../helpers/ports.js';

test('every rank gets every variable of the contract', { timeout: 60_000 }, async () => {
  const out = tempDir('env');
  const port = await freePort();
  const { OMP_NUM_THREADS: _omp, CUDA_VISIBLE_DEVICES: _cvd, ...inherited } = process.env;
  const launch = startLauncher(
    ['--nproc_per_node', '3', '--master-port', String(port), '--run-id', 'envrun', '--max-restarts', '2', FIXTURE, '--out', out, '--x', '1 2'],
    { ...(inherited as Record<string, string>), ROSEDIST_TEST_MARK: 'inherited' },
  );
  const r = await launch.done;
  assert.equal(r.code, 0, r.stderr);
  const records = workerRecords(out);
  assert.deepEqual([...records.keys()], ['attempt_0_rank_0', 'attempt_0_rank_1', 'attempt_0_rank_2']);
  const secrets = new Set<string>();
  for (const [rank, rec] of [...records.values()].entries()) {
    const v = rec.env;
    const expected: Record<string, string> = {
      RANK: String(rank),
      LOCAL_RANK: String(rank),
      WORLD_SIZE: '3',
      LOCAL_WORLD_SIZE: '3',
      GROUP_RANK: '0',
      GROUP_WORLD_SIZE: '1',
      MASTER_ADDR: '127.0.0.1',
      MASTER_PORT: String(port),
      ROSEDIST_RUN_ID: 'envrun',
      ROSEDIST_RESTART_COUNT: '0',
      ROSEDIST_MAX_RESTARTS: '2',
      ROSEDIST_NODE_ID: `${hostname()}#0`,
      ROSEDIST_LAUNCHER_PID: String(launch.child.pid),
      ROSEDIST_PREFIXED: '1',
      OMP_NUM_THREADS: '1',
      TORCHELASTIC_RUN_ID: 'envrun',
      TORCHELASTIC_RESTART_COUNT: '0',
      TORCHELASTIC_MAX_RESTARTS: '2',
      ROSEDIST_TEST_MARK: 'inherited',
    };
    for (const [name, value] of Object.entries(expected)) assert.equal(v[name], value, `rank ${rank}: ${name}`);
    assert.match(v.ROSEDIST_ERROR_FILE ?? '', new RegExp(`/envrun/attempt_0/${rank}/error\\.json$`));
    assert.equal(v.TORCHELASTIC_ERROR_FILE, v.ROSEDIST_ERROR_FILE);
    assert.match(v.ROSEDIST_SECRET ?? '', /^[0-9a-f]{64}$/);
    secrets.add(v.ROSEDIST_SECRET ?? '');
    if (countGpus() === 0) assert.equal(v.CUDA_VISIBLE_DEVICES, undefined);
    else assert.equal(v.CUDA_VISIBLE_DEVICES, String(rank));
    assert.equal(rec.ppid, launch.child.pid, 'the launcher itself is the parent');
    assert.deepEqual(rec.argv, ['--out', out, '--x', '1 2'], 'program arguments arrive untouched');
    // The worker side reads it back through the one reader, and agrees with the launcher's view.
    const contract: WorkerEnv = readWorkerEnv(v);
    assert.deepEqual(contract, rec.contract);
    assert.deepEqual([contract.rank, contract.worldSize, contract.nodeId, contract.launcherPid], [rank, 3, `${hostname()}#0`, launch.child.pid]);
  }
  assert.equal(secrets.size, 1, 'one secret per run, shared by its workers');
});
