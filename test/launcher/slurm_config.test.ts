import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCli } from '../../launcher/cli.js';
import { resolveConfig, type HostProbe } from '../../launcher/config.js';
import { ConfigError } from '../../shared/errors.js';
import { FIXTURE } from '../helpers/launcher_run.js';
import { captured } from '../helpers/scheduler_fixtures.js';

const host: HostProbe = { countGpus: () => 0, canBind: async () => true, freePort: async () => 41000, cpus: () => 2 };

function resolve(argv: string[], env: Record<string, string>) {
  return resolveConfig(parseCli(argv, env), env, host);
}

async function rejects(argv: string[], env: Record<string, string>, message: RegExp, hint: RegExp): Promise<void> {
  await assert.rejects(resolve(argv, env), (e: unknown) => {
    assert.ok(e instanceof ConfigError, String(e));
    assert.match(e.message, message);
    assert.match(e.hint ?? '', hint);
    return true;
  });
}

test('srun of one launcher per node (sbatch --ntasks-per-node=1): one job, node 0 = first host, port and secret from the job', async () => {
  const nodes = captured('sbatch_launcher_per_node');
  const cs = await Promise.all(nodes.map((n) => resolve(['--nproc-per-node', '2', FIXTURE], n.env)));
  assert.deepEqual(
    cs.map((c) => [c.nnodes, c.nodeRank, c.masterAddr, c.runId]),
    [
      [2, 0, 'n1', 'slurm-6.0'],
      [2, 1, 'n1', 'slurm-6.0'],
    ],
  );
  assert.equal(cs[0]?.masterPort, cs[1]?.masterPort);
  assert.ok((cs[0]?.masterPort ?? 0) >= 20000 && (cs[0]?.masterPort ?? 0) + 1 < 32768 && (cs[0]?.masterPort ?? 1) % 2 === 0, 'below the ephemeral range');
  assert.equal(cs[0]?.secret, cs[1]?.secret);
  assert.match(cs[0]?.secret ?? '', /^[0-9a-f]{64}$/);
  // What is given wins over what Slurm says.
  const n1 = nodes[1]?.env ?? {};
  const c = await resolve(['--master-addr', '10.77.0.11', '--master-port', '29400', '--run-id', 'mine', FIXTURE], n1);
  assert.deepEqual([c.nnodes, c.nodeRank, c.masterAddr, c.masterPort, c.runId], [2, 1, '10.77.0.11', 29400, 'mine']);
});

test('srun starting several launchers on one node is refused: each would run its own job', async () => {
  const env = captured('srun_N2_n4')[0]?.env ?? {};
  await rejects([FIXTURE], env, /srun started 2 rosedist launchers on node 0 \(SLURM_STEP_TASKS_PER_NODE=2\(x2\)\)/, /--ntasks-per-node=1/);
});

test('a launcher in the batch script of a 2-node job is refused unless told to use one node', async () => {
  const env = captured('batch')[0]?.env ?? {};
  await rejects(
    [FIXTURE],
    env,
    /outside any srun step of a 2-node Slurm job \(SLURM_JOB_NUM_NODES=2: a batch script or salloc shell\)/,
    /srun --ntasks-per-node=1.*--nnodes 1/,
  );
  const c = await resolve(['--nnodes', '1', FIXTURE], env);
  assert.deepEqual([c.nnodes, c.masterAddr, c.masterPort], [1, '127.0.0.1', 41000]);
});

test("under mpirun or another launcher, Slurm's leaked variables are not taken", async () => {
  for (const env of [captured('sbatch_mpirun')[2]?.env ?? {}, { ...(captured('sbatch_launcher_per_node')[1]?.env ?? {}), RANK: '1', WORLD_SIZE: '2' }]) {
    const c = await resolve([FIXTURE], env);
    assert.deepEqual([c.nnodes, c.nodeRank, c.masterAddr], [1, 0, '127.0.0.1']);
  }
});

test('a one-node srun step keeps the single-node defaults', async () => {
  const env = {
    ...(captured('sbatch_launcher_per_node')[0]?.env ?? {}),
    SLURM_STEP_NUM_NODES: '1',
    SLURM_STEP_NUM_TASKS: '1',
    SLURM_STEP_TASKS_PER_NODE: '1',
    SLURM_STEP_NODELIST: 'n1',
  };
  const c = await resolve([FIXTURE], env);
  assert.deepEqual([c.nnodes, c.nodeRank, c.masterAddr, c.masterPort], [1, 0, '127.0.0.1', 41000]);
});
