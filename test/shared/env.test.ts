import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readWorkerEnv, workerEnvVars, type WorkerEnv } from '../../shared/env.js';
import { ConfigError } from '../../shared/errors.js';
import { derivedPort } from '../../shared/scheduler_env.js';
import { captured } from '../helpers/scheduler_fixtures.js';
import { tempDir } from '../helpers/temp_dir.js';

const tempKeyDir = (): string => tempDir('key');

const sample: WorkerEnv = {
  rank: 3,
  localRank: 1,
  worldSize: 4,
  localWorldSize: 2,
  nodeRank: 1,
  nnodes: 2,
  masterAddr: '10.0.0.1',
  masterPort: 29400,
  runId: 'r1',
  restartCount: 2,
  maxRestarts: 5,
  errorFile: '/tmp/e.json',
  nodeId: 'host#1',
  secret: 'abc',
  launcherPid: 1234,
  tmpDir: '/tmp/rosedist-x',
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

/** [rank, worldSize, localRank, localWorldSize, nodeRank, nnodes] of every process of a captured case. */
function places(name: string): number[][] {
  return captured(name).map((c) => {
    const e = readWorkerEnv(c.env);
    return [e.rank, e.worldSize, e.localRank, e.localWorldSize, e.nodeRank, e.nnodes];
  });
}

test('srun -N2 -n4: local world size 2 from SLURM_STEP_TASKS_PER_NODE=2(x2), node index from SLURM_NODEID', () => {
  assert.deepEqual(places('srun_N2_n4'), [
    [0, 4, 0, 2, 0, 2],
    [1, 4, 1, 2, 0, 2],
    [2, 4, 0, 2, 1, 2],
    [3, 4, 1, 2, 1, 2],
  ]);
  // Uneven: 2 tasks on n1, 1 on n2 (SLURM_STEP_TASKS_PER_NODE=2,1).
  assert.deepEqual(places('srun_N2_n3'), [
    [0, 3, 0, 2, 0, 2],
    [1, 3, 1, 2, 0, 2],
    [2, 3, 0, 1, 1, 2],
  ]);
  assert.deepEqual(places('sbatch_srun'), places('srun_N2_n4'));
  assert.deepEqual(places('sbatch_srun_n2'), [
    [0, 2, 0, 1, 0, 2],
    [1, 2, 0, 1, 1, 2],
  ]);
});

test('srun: the master is the first host of SLURM_STEP_NODELIST, on a port and with a secret all tasks derive alike', () => {
  const keyDir = tempKeyDir();
  const envs = captured('srun_N2_n4', keyDir).map((c) => readWorkerEnv(c.env));
  assert.deepEqual(new Set(envs.map((e) => e.masterAddr)), new Set(['n1']));
  assert.equal(new Set(envs.map((e) => e.masterPort)).size, 1);
  assert.equal(new Set(envs.map((e) => e.runId)).size, 1);
  assert.equal(envs[0]?.runId, 'slurm-1.0');
  assert.equal(new Set(envs.map((e) => e.secret)).size, 1);
  assert.match(envs[0]?.secret ?? '', /^[0-9a-f]{64}$/);
  // Another job of the same user: another secret. MASTER_ADDR / MASTER_PORT set by hand win.
  const other = captured('sbatch_srun', keyDir).map((c) => readWorkerEnv(c.env));
  assert.notEqual(other[0]?.secret, envs[0]?.secret);
  const first = captured('srun_N2_n4', keyDir)[2]?.env ?? {};
  const byHand = readWorkerEnv({ ...first, MASTER_ADDR: '10.77.0.11', MASTER_PORT: '1234' });
  assert.deepEqual([byHand.masterAddr, byHand.masterPort], ['10.77.0.11', 1234]);
});

test('mpirun -np 2 on one host: node rank 0 of 1 node (OMPI_COMM_WORLD_NODE_RANK is the rank within the node)', () => {
  assert.deepEqual(places('mpirun_np2'), [
    [0, 2, 0, 2, 0, 1],
    [1, 2, 1, 2, 0, 1],
  ]);
  assert.equal(readWorkerEnv(captured('mpirun_np2')[1]?.env ?? {}).masterAddr, '127.0.0.1');
});

test('a node rank at or above the node count is refused, naming the variables', () => {
  assert.throws(
    () => readWorkerEnv({ RANK: '1', WORLD_SIZE: '2', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '2', GROUP_RANK: '1', GROUP_WORLD_SIZE: '1' }),
    /GROUP_RANK=1 .* not below GROUP_WORLD_SIZE=1/,
  );
  const n2 = captured('srun_N2_n4')[3]?.env ?? {};
  assert.throws(() => readWorkerEnv({ ...n2, SLURM_NODEID: '2' }), /SLURM_NODEID=2 is not below SLURM_STEP_NUM_NODES=2/);
  const ompi = captured('sbatch_mpirun')[3]?.env ?? {};
  assert.throws(() => readWorkerEnv({ ...ompi, OMPI_MCA_orte_num_nodes: '1' }), /OMPI_MCA_orte_num_nodes=1/);
});

test("mpirun inside sbatch: Open MPI's variables win over the leaked SLURM_PROCID=0", () => {
  const keyDir = tempKeyDir();
  const cs = captured('sbatch_mpirun', keyDir);
  assert.deepEqual(
    cs.map((c) => c.env.SLURM_PROCID),
    ['0', '0', '0', '0'],
    'the fixture holds the leak',
  );
  const envs = cs.map((c) => readWorkerEnv(c.env));
  assert.deepEqual(
    envs.map((e) => [e.rank, e.worldSize, e.localRank, e.localWorldSize, e.nodeRank, e.nnodes]),
    [
      [0, 4, 0, 2, 0, 2],
      [1, 4, 1, 2, 0, 2],
      [2, 4, 0, 2, 1, 2],
      [3, 4, 1, 2, 1, 2],
    ],
  );
  assert.deepEqual(
    cs.map((c) => c.host),
    ['n1', 'n1', 'n2', 'n2'],
  );
  // Rank 0 runs where mpirun runs (its default inside an allocation): mpirun's address.
  assert.deepEqual(new Set(envs.map((e) => e.masterAddr)), new Set(['10.77.0.11']));
  assert.equal(new Set(envs.map((e) => e.masterPort)).size, 1);
  assert.equal(new Set(envs.map((e) => e.secret)).size, 1);
  assert.notEqual(envs[0]?.secret, undefined);
});

test('mpirun layouts rosedist cannot place are refused, naming the variables', () => {
  const bynode = captured('sbatch_mpirun_bynode');
  assert.throws(
    () => readWorkerEnv(bynode[1]?.env ?? {}),
    (e: unknown) => e instanceof ConfigError && /OMPI_COMM_WORLD_RANK=1 is local rank 0/.test(e.message) && /--map-by slot/.test(e.hint ?? ''),
  );
  const np3 = captured('sbatch_mpirun_np3');
  assert.throws(
    () => readWorkerEnv(np3[2]?.env ?? {}),
    /OMPI_COMM_WORLD_LOCAL_SIZE=1, OMPI_COMM_WORLD_SIZE=3, OMPI_MCA_orte_num_nodes=2.*same number on every node/,
  );
  const pmi = { PMI_RANK: '1', PMI_SIZE: '2' };
  assert.throws(() => readWorkerEnv(pmi), /PMI_RANK is set/);
});

test('the process of a batch script is alone: a world of one, whatever SLURM_NTASKS says', () => {
  assert.deepEqual(places('batch'), [[0, 1, 0, 1, 0, 1]]);
  assert.equal(readWorkerEnv(captured('batch')[0]?.env ?? {}).secret, undefined);
});

test('a garbled Slurm list names the variable', () => {
  const env = captured('srun_N2_n4')[0]?.env ?? {};
  assert.throws(() => readWorkerEnv({ ...env, SLURM_STEP_NODELIST: 'n[1-2' }), /SLURM_STEP_NODELIST="n\[1-2".*unclosed bracket/);
  assert.throws(
    () => readWorkerEnv({ ...env, SLURM_STEP_TASKS_PER_NODE: '2(x3)' }),
    /SLURM_STEP_TASKS_PER_NODE=2\(x3\) covers 3 nodes, SLURM_STEP_NUM_NODES=2/,
  );
});

test('a malformed value names the variable', () => {
  assert.throws(
    () => readWorkerEnv({ RANK: 'x', WORLD_SIZE: '2' }),
    (e: unknown) => e instanceof ConfigError && /RANK="x"/.test(e.message),
  );
  assert.throws(() => readWorkerEnv({ RANK: '2', WORLD_SIZE: '2' }), /not below WORLD_SIZE/);
  assert.throws(() => readWorkerEnv({ MASTER_PORT: '70000' }), /MASTER_PORT/);
});

test('derived ports: even, below the ephemeral range with the next one, the same for the same job', () => {
  const ports = Array.from({ length: 2000 }, (_, i) => derivedPort(`slurm/${i}/0`));
  assert.ok(ports.every((p) => p % 2 === 0 && p >= 20000 && p + 1 <= 32767));
  assert.ok(new Set(ports).size > 1500, 'spread over the range');
  assert.equal(derivedPort('slurm/5/0'), derivedPort('slurm/5/0'));
});
