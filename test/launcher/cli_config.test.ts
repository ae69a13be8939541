import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseCli } from '../../launcher/cli.js';
import { resolveConfig, type HostProbe } from '../../launcher/config.js';
import { ConfigError } from '../../shared/errors.js';
import { packagePath } from '../../shared/runtime.js';
import { FIXTURE, tempDir } from '../helpers/launcher_run.js';

/** A host with `gpus` GPUs, 6 CPUs, every port free except those in `busy`; picks port 41000. */
function host(gpus = 0, busy: number[] = []): HostProbe {
  return { countGpus: () => gpus, canBind: async (_h, p) => !busy.includes(p), freePort: async () => 41000, cpus: () => 6 };
}

function resolve(argv: string[], env: Record<string, string> = {}, h = host()) {
  return resolveConfig(parseCli(argv, env), env, h);
}

/** Expect a ConfigError whose message names `option`. */
async function rejects(argv: string[], option: RegExp, env: Record<string, string> = {}, h = host()): Promise<void> {
  await assert.rejects(
    async () => resolve(argv, env, h),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${String(e)}`);
      assert.match(e.message, option);
      assert.ok(e.hint, 'a hint says how to fix it');
      return true;
    },
  );
}

test('torchrun spellings, program and its arguments untouched', async () => {
  for (const flag of ['--nproc-per-node', '--nproc_per_node']) {
    const c = await resolve([flag, '3', '--max_restarts=2', FIXTURE, '--nproc-per-node', '9', '-x', '1', '--', 'y']);
    assert.equal(c.nprocPerNode, 3);
    assert.equal(c.maxRestarts, 2);
    assert.deepEqual(c.program, { kind: 'node', path: FIXTURE });
    assert.deepEqual(c.programArgs, ['--nproc-per-node', '9', '-x', '1', '--', 'y']);
    assert.ok(Object.isFrozen(c));
  }
});

test('defaults: one worker, a free port on one node, 29500 on several, a random run id and secret', async () => {
  const c = await resolve([FIXTURE]);
  assert.deepEqual(
    [c.nprocPerNode, c.nnodes, c.nodeRank, c.masterAddr, c.masterPort, c.maxRestarts, c.monitorIntervalMs],
    [1, 1, 0, '127.0.0.1', 41000, 0, 100],
  );
  assert.equal(c.runIdGiven, false);
  assert.match(c.secret, /^[0-9a-f]{64}$/);
  const d = await resolve([FIXTURE]);
  assert.notEqual(c.runId, d.runId);
  assert.notEqual(c.secret, d.secret);
  const dir = tempDir('cfg');
  const secretFile = join(dir, 'secret');
  writeFileSync(secretFile, 'a'.repeat(32) + '\n');
  const m = await resolve(['--nnodes', '2', '--node-rank', '1', '--secret-file', secretFile, FIXTURE]);
  assert.equal(m.masterPort, 29500);
  assert.equal(m.secret, 'a'.repeat(32));
});

test('PET_* variables fill in options; the command line wins', async () => {
  const env = { PET_NPROC_PER_NODE: '4', PET_MAX_RESTARTS: '3', PET_RUN_ID: 'fromenv' };
  const c = await resolve([FIXTURE], env);
  assert.deepEqual([c.nprocPerNode, c.maxRestarts, c.runId], [4, 3, 'fromenv']);
  assert.equal((await resolve(['--nproc-per-node', '2', FIXTURE], env)).nprocPerNode, 2);
  await rejects([FIXTURE], /PET_NPROC_PER_NODE "0"/, { PET_NPROC_PER_NODE: '0' });
});

test('nproc-per-node: gpu, cpu and auto', async () => {
  assert.equal((await resolve(['--nproc-per-node', 'gpu', FIXTURE], {}, host(2))).nprocPerNode, 2);
  assert.equal((await resolve(['--nproc-per-node', 'auto', FIXTURE], {}, host(2))).nprocPerNode, 2);
  assert.equal((await resolve(['--nproc-per-node', 'auto', FIXTURE], {}, host(0))).nprocPerNode, 6);
  assert.equal((await resolve(['--nproc-per-node', 'cpu', FIXTURE], {}, host(2))).nprocPerNode, 6);
  // A user's CUDA_VISIBLE_DEVICES narrows what a worker may use.
  assert.equal((await resolve(['--nproc-per-node', 'gpu', FIXTURE], { CUDA_VISIBLE_DEVICES: '1' }, host(4))).nprocPerNode, 1);
  await rejects(['--nproc-per-node', 'gpu', FIXTURE], /--nproc-per-node gpu: no NVIDIA GPU/);
});

test('bad input names the option', async () => {
  await rejects(['--nproc-per-node', '0', FIXTURE], /--nproc-per-node "0"/);
  await rejects(['--nproc-per-node', 'many', FIXTURE], /--nproc-per-node "many"/);
  await rejects(['--master-port', '70000', FIXTURE], /--master-port "70000"/);
  await rejects(['--master-port', '0', FIXTURE], /--master-port "0"/);
  await rejects(['--nnodes', '2', '--master-port', '65535', '--secret', 'b'.repeat(20), FIXTURE], /--master-port "65535"/);
  await rejects(['--nnodes', '2', '--node-rank', '2', FIXTURE], /--node-rank 2 is not below --nnodes 2/);
  await rejects(['--nnodes', '1:2', FIXTURE], /a multi-node run needs a shared secret/);
  await rejects(['--standalone', '--nnodes', '2', FIXTURE], /--standalone/);
  await rejects(['--max-restarts', '-1', FIXTURE], /--max-restarts "-1"/);
  await rejects(['--monitor-interval', '0', FIXTURE], /--monitor-interval "0"/);
  await rejects(['--run-id', '../x', FIXTURE], /--run-id "..\/x"/);
  await rejects(['--redirects', '3', FIXTURE], /--log-dir/);
  await rejects(['--tee', '4', '--log-dir', '/tmp', FIXTURE], /--tee "4"/);
  await rejects(['--local-ranks-filter', '0,a', FIXTURE], /--local-ranks-filter "0,a"/);
  await rejects(['--bogus', '1', FIXTURE], /unknown option --bogus/);
  await rejects(['--nnodes', '1', '--nnodes', '2', FIXTURE], /--nnodes was given more than once/);
  await rejects([], /no PROGRAM/);
  await rejects(['/no/such/program.ts'], /program "\/no\/such\/program.ts" does not exist/);
  await rejects([join(tempDir('cfg'))], /is a directory, not a file/);
  await rejects(
    ['--nproc-per-node', '2', '--local-ranks-filter', '2', FIXTURE],
    /--local-ranks-filter "2" names local rank 2, but this node runs local ranks 0\.\.1/,
  );
});

test('a busy port is refused before anything starts', async () => {
  await rejects(['--master-port', '5000', FIXTURE], /--master-port 5000/, {}, host(0, [5000]));
  // Node 0 of several nodes also needs master-port + 1 for the other launchers; other nodes bind nothing.
  const s = ['--secret', 'c'.repeat(20)];
  await rejects(['--nnodes', '2', '--master-port', '5000', ...s, FIXTURE], /5001/, {}, host(0, [5001]));
  assert.equal((await resolve(['--nnodes', '2', '--node-rank', '1', '--master-port', '5000', ...s, FIXTURE], {}, host(0, [5000, 5001]))).masterPort, 5000);
});

test('multi-node needs a shared secret of some length', async () => {
  await rejects(['--nnodes', '2', FIXTURE], /needs a shared secret/);
  await rejects(['--nnodes', '2', '--secret', 'short', FIXTURE], /too short/);
  await rejects(['--nnodes', '2', '--secret-file', '/no/such/file', FIXTURE], /--secret-file \/no\/such\/file/);
  await rejects(['--secret', 'd'.repeat(20), '--secret-file', '/x', FIXTURE], /both --secret and --secret-file/);
});

test('PROGRAM: ours, a Python script or module with the chosen interpreter, or any executable with --no-python', async () => {
  const dir = tempDir('prog');
  const script = join(dir, 'train.py');
  writeFileSync(script, 'print(1)\n');
  const python = join(dir, 'python3');
  writeFileSync(python, '#!/bin/sh\n');
  chmodSync(python, 0o755);
  const tool = join(dir, 'tool');
  writeFileSync(tool, '#!/bin/sh\n');
  chmodSync(tool, 0o755);
  const onPath = { PATH: dir };
  assert.deepEqual((await resolve(['train_ddp'])).program, { kind: 'node', path: packagePath('worker/train_ddp.ts') });
  assert.deepEqual((await resolve([script, '--x'], onPath)).program, { kind: 'python', python, path: script });
  assert.deepEqual((await resolve([script], { PYTHON: tool })).program, { kind: 'python', python: tool, path: script }, '$PYTHON');
  assert.deepEqual((await resolve([script], { PYTHON_EXEC: tool })).program, { kind: 'python', python: tool, path: script }, "torchrun's $PYTHON_EXEC");
  assert.deepEqual((await resolve(['--python', tool, script], { PYTHON: python })).program, { kind: 'python', python: tool, path: script }, '--python wins');
  for (const m of ['-m', '--module']) {
    assert.deepEqual((await resolve([m, 'pkg.train', '--lr', '1'], onPath)).program, { kind: 'module', python, module: 'pkg.train' });
  }
  assert.deepEqual((await resolve(['pkg.train'], { ...onPath, PET_MODULE: '1' })).program, { kind: 'module', python, module: 'pkg.train' });
  for (const flag of ['--no-python', '--no_python']) {
    assert.deepEqual((await resolve([flag, tool, 'a'])).program, { kind: 'executable', path: tool });
    assert.deepEqual((await resolve([flag, 'tool'], onPath)).program, { kind: 'executable', path: tool }, 'a command on the PATH');
  }
  assert.deepEqual((await resolve(['tool'], { ...onPath, PET_NO_PYTHON: 'true' })).program, { kind: 'executable', path: tool });
});

test('PROGRAM: what cannot run is one ConfigError naming the fix', async () => {
  const dir = tempDir('prog-bad');
  const script = join(dir, 'train.py');
  writeFileSync(script, 'print(1)\n');
  const notExecutable = join(dir, 'run.sh');
  writeFileSync(notExecutable, 'echo\n');
  await rejects([join(dir, 'train.rb')], /program ".*train\.rb" is neither a \.js\/\.mjs\/\.ts nor a \.py file/);
  await rejects([join(dir, 'run')], /program ".*run" does not exist/);
  writeFileSync(join(dir, 'run'), '#!/bin/sh\n');
  await rejects([join(dir, 'run')], /program ".*run" is neither a \.js\/\.mjs\/\.ts nor a \.py file/);
  await rejects([join(dir, 'missing.py')], /program ".*missing\.py" does not exist/);
  await rejects([script], /python3 is not on the PATH/, { PATH: dir });
  await rejects([script], /PYTHON "\/no\/python" is not an executable file/, { PYTHON: '/no/python' });
  await rejects(['--python', 'nopython3', script], /--python "nopython3" is not an executable file/, { PATH: dir });
  await rejects(['--python', '/bin/sh', FIXTURE], /--python was given, but .* is a JavaScript\/TypeScript program/);
  await rejects(['--no-python', '-m', 'pkg'], /--no-python and --module were both given/);
  await rejects(['--no-python', '--python', '/bin/sh', 'ls'], /--python was given with --no-python/);
  await rejects(['-m', 'pkg/train.py'], /--module "pkg\/train.py" is not a Python module name/);
  await rejects(['--no-python', notExecutable], /cannot run program ".*run\.sh" with --no-python: .* is not an executable file/);
  await rejects(['--no-python', 'no-such-command'], /cannot run program "no-such-command" with --no-python: it is not on the PATH/, { PATH: dir });
  await rejects([FIXTURE], /PET_NO_PYTHON "maybe" is not a yes or no/, { PET_NO_PYTHON: 'maybe' });
});

const S = 'e'.repeat(32);

test("--nnodes MIN:MAX: an elastic run with torchrun's rendezvous defaults (900 s, last call 30 s), or its options", async () => {
  const c = await resolve(['--nnodes', '2:4', '--secret', S, FIXTURE]);
  assert.deepEqual(c.elastic, { minNodes: 2, maxNodes: 4, rdzvTimeoutMs: 900_000, lastCallMs: 30_000 });
  assert.equal(c.nnodes, 4);
  const d = await resolve(['--nnodes', '1:1', '--rdzv-timeout', '5', '--rdzv_last_call', '0.5', '--secret', S, FIXTURE]);
  assert.deepEqual(d.elastic, { minNodes: 1, maxNodes: 1, rdzvTimeoutMs: 5000, lastCallMs: 500 });
  assert.equal((await resolve(['--nnodes', '2', '--node-rank', '1', '--secret', S, FIXTURE])).elastic, undefined);
  // The port is checked when a launcher tries to host (any launcher may), not here.
  assert.equal((await resolve(['--nnodes', '1:2', '--master-port', '29400', '--secret', S, FIXTURE], {}, host(0, [29400, 29401]))).masterPort, 29400);
});

test('bad elastic options: one ConfigError naming the option', async () => {
  for (const range of ['3:2', '0:2', '1:', ':2', 'a:b', '1:2:3', '2:2000'])
    await rejects(['--nnodes', range, '--secret', S, FIXTURE], new RegExp(`--nnodes "${range}" is not a range of nodes`));
  await rejects(['--nnodes', '2:3', '--node-rank', '1', '--secret', S, FIXTURE], /--node-rank was given with --nnodes 2:3/);
  await rejects(['--nnodes', '2', '--node-rank', '0', '--rdzv-timeout', '5', '--secret', S, FIXTURE], /--rdzv-timeout applies to elastic runs only/);
  await rejects(['--rdzv-last-call', '5', FIXTURE], /--rdzv-last-call applies to elastic runs only/);
  await rejects(['--nnodes', '2:3', '--rdzv-timeout', '0', '--secret', S, FIXTURE], /--rdzv-timeout "0" is not a number of seconds/);
  await rejects(['--nnodes', '1:2', '--standalone', FIXTURE], /--standalone runs a single node/);
});

test('timeouts: 0 and inf mean none, huge values are kept (timers chain them), negative or text is refused', async () => {
  const join = async (v: string) => (await resolve(['--join-timeout', v, FIXTURE])).joinTimeoutMs;
  assert.deepEqual(
    [await join('0'), await join('inf'), await join('Infinity'), await join('10000000'), await join('1.5')],
    [Infinity, Infinity, Infinity, 1e10, 1500],
  );
  assert.equal((await resolve(['--monitor-interval', '10000000', FIXTURE])).monitorIntervalMs, 1e10);
  await rejects(['--join-timeout', '-1', FIXTURE], /--join-timeout "-1"/);
  await rejects(['--join-timeout', 'soon', FIXTURE], /--join-timeout "soon"/);
  await rejects(['--monitor-interval', 'inf', FIXTURE], /--monitor-interval "inf" is not a number of seconds above 0/);
});
