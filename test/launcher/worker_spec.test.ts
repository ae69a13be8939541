import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { parseCli } from '../../launcher/cli.js';
import { resolveConfig } from '../../launcher/config.js';
import { countGpus, visibleDeviceFor } from '../../launcher/devices.js';
import { BUILTIN_V8_FLAGS } from '../../launcher/program.js';
import { rankOffset, workerSpecs } from '../../launcher/worker_spec.js';
import { packagePath } from '../../shared/runtime.js';
import { readWorkerEnv } from '../../shared/env.js';
import { FIXTURE, tempDir } from '../helpers/launcher_run.js';

async function config(argv: string[], gpus = 0) {
  const host = { countGpus: () => gpus, canBind: async () => true, freePort: async () => 41000, cpus: () => 4 };
  return resolveConfig(parseCli([...argv, FIXTURE, '--lr', '1'], {}), {}, host);
}

test("node 1's workers follow node 0's; each gets the contract, one thread and its own files", async () => {
  const c = await config([
    '--nnodes',
    '2',
    '--node-rank',
    '1',
    '--nproc-per-node',
    '2',
    '--master-port',
    '5000',
    '--max-restarts',
    '4',
    '--secret',
    's'.repeat(20),
  ]);
  const layout = { runId: 'agreed', worldSize: 5, localWorldSizes: [3, 2] };
  assert.equal(rankOffset(layout, 1), 3);
  const specs = workerSpecs(c, layout, 2, '/base/agreed', { PATH: '/bin' });
  assert.deepEqual(
    specs.map((s) => [s.rank, s.localRank]),
    [
      [3, 0],
      [4, 1],
    ],
  );
  for (const s of specs) {
    const e = readWorkerEnv(s.env);
    assert.deepEqual(e, {
      rank: s.rank,
      localRank: s.localRank,
      worldSize: 5,
      localWorldSize: 2,
      nodeRank: 1,
      nnodes: 2,
      masterAddr: '127.0.0.1',
      masterPort: 5000,
      runId: 'agreed',
      restartCount: 2,
      maxRestarts: 4,
      errorFile: `/base/agreed/attempt_2/${s.rank}/error.json`,
      nodeId: `${hostname()}#1`,
      secret: 's'.repeat(20),
      launcherPid: process.pid,
      tmpDir: undefined,
    });
    assert.equal(s.env.OMP_NUM_THREADS, '1');
    assert.equal(s.env.ROSEDIST_PREFIXED, '1');
    assert.equal(s.env.PATH, '/bin', 'the launcher environment is inherited');
    assert.equal(s.env.CUDA_VISIBLE_DEVICES, undefined, 'no GPUs, nothing set');
    assert.deepEqual(s.args.slice(-3), [FIXTURE, '--lr', '1']);
    assert.ok(
      s.args.some((a) => a.endsWith('shared/launcher_watch.ts')),
      'the watch preload is loaded',
    );
    assert.equal(s.command, process.execPath);
    assert.ok(!s.args.some((a) => a.startsWith('--max-semi-space-size')), "a user's program keeps Node's V8 defaults");
    assert.deepEqual(s.output.files, { stdout: undefined, stderr: undefined }, 'no --log-dir, no log files');
  }
  assert.equal(workerSpecs(c, layout, 0, '/base', { OMP_NUM_THREADS: '8' })[0]?.env.OMP_NUM_THREADS, '8', "a user's value is kept");
});

test("the built-in programs' workers start with their V8 flags, before the loader", async () => {
  const host = { countGpus: () => 0, canBind: async () => true, freePort: async () => 41000, cpus: () => 4 };
  const layout = { runId: 'r', worldSize: 1, localWorldSizes: [1] };
  for (const name of ['train_ddp', 'train_minimal']) {
    const c = await resolveConfig(parseCli([name, '--zero', '1'], {}), {}, host);
    const [s] = workerSpecs(c, layout, 0, '/b', {});
    assert.deepEqual(s?.args.slice(0, BUILTIN_V8_FLAGS.length + 1), [...BUILTIN_V8_FLAGS, '--import']);
    assert.deepEqual(s?.args.slice(-3), [packagePath(`worker/${name}.ts`), '--zero', '1']);
  }
});

test('CUDA_VISIBLE_DEVICES: the local rank, or its entry in a user list', async () => {
  const c = await config(['--nproc-per-node', '2'], 2);
  const layout = { runId: 'r', worldSize: 2, localWorldSizes: [2] };
  assert.deepEqual(
    workerSpecs(c, layout, 0, '/b', {}).map((s) => s.env.CUDA_VISIBLE_DEVICES),
    ['0', '1'],
  );
  assert.deepEqual(
    workerSpecs(c, layout, 0, '/b', { CUDA_VISIBLE_DEVICES: '5,7' }).map((s) => s.env.CUDA_VISIBLE_DEVICES),
    ['5', '7'],
  );
  assert.deepEqual(
    workerSpecs(c, layout, 0, '/b', { CUDA_VISIBLE_DEVICES: '3' }).map((s) => s.env.CUDA_VISIBLE_DEVICES),
    ['3', '3'],
  );
  assert.equal(visibleDeviceFor(0, 0, undefined), undefined);
});

test('GPUs are counted from the driver directory, else from nvidia-smi -L, else none', () => {
  const dir = tempDir('gpus');
  const proc = join(dir, 'gpus');
  mkdirSync(join(proc, '0000:01:00.0'), { recursive: true });
  mkdirSync(join(proc, '0000:02:00.0'));
  const smi = join(dir, 'nvidia-smi');
  writeFileSync(smi, '#!/bin/sh\necho "GPU 0: NVIDIA H100 (UUID: GPU-1)"\necho "GPU 1: NVIDIA H100 (UUID: GPU-2)"\necho "GPU 2: NVIDIA H100 (UUID: GPU-3)"\n');
  chmodSync(smi, 0o755);
  assert.equal(countGpus({ procDir: proc, nvidiaSmi: smi }), 2);
  assert.equal(countGpus({ procDir: join(dir, 'none'), nvidiaSmi: smi }), 3);
  assert.equal(countGpus({ procDir: join(dir, 'none'), nvidiaSmi: join(dir, 'no-smi') }), 0);
});

test("Python scripts, modules and executables: their command lines, torchrun's variables, a parent-death signal where setpriv is", async () => {
  const dir = tempDir('spec-py');
  const python = join(dir, 'python3');
  const setpriv = join(dir, 'setpriv');
  const script = join(dir, 'train.py');
  for (const f of [python, setpriv, script]) {
    writeFileSync(f, '#!/bin/sh\n');
    chmodSync(f, 0o755);
  }
  const host = { countGpus: () => 0, canBind: async () => true, freePort: async () => 41000, cpus: () => 4 };
  const layout = { runId: 'r', worldSize: 3, localWorldSizes: [3] };
  const specsOf = async (argv: string[], baseEnv: Record<string, string>) =>
    workerSpecs(
      await resolveConfig(parseCli(['--nproc-per-node', '3', '--max-restarts', '2', ...argv], {}), { PYTHON: python }, host),
      layout,
      1,
      '/b/r',
      baseEnv,
    );
  const bare = { PATH: join(dir, 'none') };
  const [s] = await specsOf([script, '--lr', '1'], bare);
  assert.deepEqual([s?.command, s?.args], [python, ['-u', script, '--lr', '1']]);
  const [m] = await specsOf(['-m', 'pkg.train', '--lr', '1'], bare);
  assert.deepEqual([m?.command, m?.args], [python, ['-u', '-m', 'pkg.train', '--lr', '1']]);
  const [x] = await specsOf(['--no-python', script, 'a'], bare);
  assert.deepEqual([x?.command, x?.args], [script, ['a']]);
  const [w] = await specsOf([script], { PATH: dir });
  assert.deepEqual([w?.command, w?.args], [setpriv, ['--pdeathsig', 'TERM', '--', python, '-u', script]]);
  const [n] = await specsOf([FIXTURE], { PATH: dir });
  assert.equal(n?.command, process.execPath, 'our own programs have the watch preload instead');
  for (const spec of await specsOf([script], bare)) {
    const expected = {
      RANK: String(spec.rank),
      LOCAL_RANK: String(spec.rank),
      WORLD_SIZE: '3',
      LOCAL_WORLD_SIZE: '3',
      GROUP_RANK: '0',
      GROUP_WORLD_SIZE: '1',
      ROLE_NAME: 'default',
      ROLE_RANK: String(spec.rank),
      ROLE_WORLD_SIZE: '3',
      MASTER_ADDR: '127.0.0.1',
      MASTER_PORT: '41000',
      TORCHELASTIC_RESTART_COUNT: '1',
      TORCHELASTIC_MAX_RESTARTS: '2',
      TORCHELASTIC_RUN_ID: 'r',
      TORCHELASTIC_USE_AGENT_STORE: 'False',
      TORCHELASTIC_ERROR_FILE: `/b/r/attempt_1/${spec.rank}/error.json`,
      OMP_NUM_THREADS: '1',
      NCCL_ASYNC_ERROR_HANDLING: '1',
    };
    for (const [name, value] of Object.entries(expected)) assert.equal(spec.env[name], value, `rank ${spec.rank}: ${name}`);
  }
});
