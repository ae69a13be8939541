import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readWorkerEnv, workerEnvVars, type WorkerEnv } from '../../shared/env.js';
import { ConfigError } from '../../shared/errors.js';

const sample: WorkerEnv = {
  rank: 3, localRank: 1, worldSize: 4, localWorldSize: 2, nodeRank: 1, nnodes: 2,
  masterAddr: '10.0.0.1', masterPort: 29400, runId: 'r1', restartCount: 2, maxRestarts: 5,
  errorFile: '/tmp/e.json', nodeId: 'host#1', secret: 'abc', launcherPid: 1234, tmpDir: '/tmp/rosedist-x',
};

test('env contract round-trips through variables', () => {
  assert.deepEqual(readWorkerEnv(workerEnvVars(sample)), sample);
});

test('no variables: a world of one', () => {
  const e = readWorkerEnv({});
  assert.equal(e.rank, 0);
  assert.equal(e.worldSize, 1);
  assert.equal(e.localRank, 0);
});

test('Slurm and Open MPI variables are understood', () => {
  const s = readWorkerEnv({ SLURM_PROCID: '5', SLURM_NTASKS: '8', SLURM_LOCALID: '1', SLURM_NTASKS_PER_NODE: '4', SLURM_NODEID: '1', SLURM_NNODES: '2', MASTER_ADDR: 'n0', MASTER_PORT: '1234' });
  assert.deepEqual([s.rank, s.worldSize, s.localRank, s.localWorldSize, s.nodeRank, s.nnodes], [5, 8, 1, 4, 1, 2]);
  const m = readWorkerEnv({ OMPI_COMM_WORLD_RANK: '2', OMPI_COMM_WORLD_SIZE: '3', OMPI_COMM_WORLD_LOCAL_RANK: '2', OMPI_COMM_WORLD_LOCAL_SIZE: '3' });
  assert.deepEqual([m.rank, m.worldSize, m.localRank], [2, 3, 2]);
});

test('a malformed value names the variable', () => {
  assert.throws(() => readWorkerEnv({ RANK: 'x', WORLD_SIZE: '2' }), (e: unknown) => e instanceof ConfigError && /RANK="x"/.test(e.message));
  assert.throws(() => readWorkerEnv({ RANK: '2', WORLD_SIZE: '2' }), /not below WORLD_SIZE/);
  assert.throws(() => readWorkerEnv({ MASTER_PORT: '70000' }), /MASTER_PORT/);
});
