import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { parseCli } from '../../launcher/cli.js';
import { resolveConfig } from '../../launcher/config.js';
import { countGpus, visibleDeviceFor } from '../../launcher/devices.js';
import { rankOffset, workerSpecs } from '../../launcher/worker_spec.js';
import { readWorkerEnv } from '../../shared/env.js';
import { FIXTURE, tempDir } from '../helpers/launcher_run.js';

async function config(argv: string[], gpus = 0) {
  const host = { countGpus: () => gpus, canBind: async () => true, freePort: async () => 41000, cpus: () => 4 };
  return resolveConfig(parseCli([...argv, FIXTURE, '--lr', '1'], {}), {}, host);
}

test("node 1's workers follow node 0's; each gets the contract, one thread and its own files", async () => {
  const c = await config(['--nnodes', '2', '--node-rank', '1', '--nproc-per-node', '2', '--master-port', '5000', '--max-restarts', '4', '--secret', 's'.repeat(20)]);
  const layout = { runId: 'agreed', worldSize: 5, localWorldSizes: [3, 2] };
  assert.equal(rankOffset(layout, 1), 3);
  const specs = workerSpecs(c, layout, 2, '/base', { PATH: '/bin' });
  assert.deepEqual(specs.map((s) => [s.rank, s.localRank]), [[3, 0], [4, 1]]);
  for (const s of specs) {
    const e = readWorkerEnv(s.env);
    assert.deepEqual(e, {
      rank: s.rank, localRank: s.localRank, worldSize: 5, localWorldSize: 2, nodeRank: 1, nnodes: 2,
      masterAddr: '127.0.0.1', masterPort: 5000, runId: 'agreed', restartCount: 2, maxRestarts: 4,
      errorFile: `/base/agreed/attempt_2/${s.rank}/error.json`, nodeId: `${hostname()}#1`, secret: 's'.repeat(20), launcherPid: process.pid, tmpDir: undefined,
    });
    assert.equal(s.env.OMP_NUM_THREADS, '1');
    assert.equal(s.env.ROSEDIST_PREFIXED, '1');
    assert.equal(s.env.PATH, '/bin', 'the launcher environment is inherited');
    assert.equal(s.env.CUDA_VISIBLE_DEVICES, undefined, 'no GPUs, nothing set');
    assert.deepEqual(s.args.slice(-3), [FIXTURE, '--lr', '1']);
    assert.ok(s.args.some((a) => a.endsWith('shared/launcher_watch.ts')), 'the watch preload is loaded');
    assert.equal(s.command, process.execPath);
    assert.deepEqual(s.output.files, { stdout: undefined, stderr: undefined }, 'no --log-dir, no log files');
  }
  assert.equal(workerSpecs(c, layout, 0, '/base', { OMP_NUM_THREADS: '8' })[0]?.env.OMP_NUM_THREADS, '8', "a user's value is kept");
});

test('CUDA_VISIBLE_DEVICES: the local rank, or its entry in a user list', async () => {
  const c = await config(['--nproc-per-node', '2'], 2);
  const layout = { runId: 'r', worldSize: 2, localWorldSizes: [2] };
  assert.deepEqual(workerSpecs(c, layout, 0, '/b', {}).map((s) => s.env.CUDA_VISIBLE_DEVICES), ['0', '1']);
  assert.deepEqual(workerSpecs(c, layout, 0, '/b', { CUDA_VISIBLE_DEVICES: '5,7' }).map((s) => s.env.CUDA_VISIBLE_DEVICES), ['5', '7']);
  assert.deepEqual(workerSpecs(c, layout, 0, '/b', { CUDA_VISIBLE_DEVICES: '3' }).map((s) => s.env.CUDA_VISIBLE_DEVICES), ['3', '3']);
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
