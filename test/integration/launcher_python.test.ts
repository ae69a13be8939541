/**
 * The launcher as a drop-in for torchrun: Python scripts, modules and executables as workers, with
 * torchrun's environment and torch's error files. Needs a python3 (skipped with a message where
 * there is none); the @record test also needs torch (python3-torch).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isAlive, launcherLines, runLauncher, startLauncher, tempDir, waitFor } from '../helpers/launcher_run.js';
import { freePortPair } from '../helpers/launcher_ports.js';
import { findPython } from '../helpers/python.js';

const PY_WORKER = fileURLToPath(new URL('../fixtures/py_worker.py', import.meta.url));
const FIXTURES = fileURLToPath(new URL('../fixtures', import.meta.url));
const py = findPython({ torch: false });
const torch = findPython({ torch: true });
/** Every test runs the fixture with this interpreter. */
const ENV = { PYTHON: py.python ?? '' };

interface PyRecord {
  readonly pid: number;
  readonly ppid: number;
  readonly argv: string[];
  readonly rest: string[];
  readonly env: Record<string, string>;
}

/** The fixture's records in `dir`, by attempt_<n>_rank_<r>. */
function records(dir: string): Map<string, PyRecord> {
  const out = new Map<string, PyRecord>();
  for (const rank of [0, 1, 2]) {
    for (const attempt of [0, 1]) {
      try {
        out.set(`attempt_${attempt}_rank_${rank}`, JSON.parse(readFileSync(join(dir, `attempt_${attempt}_rank_${rank}.json`), 'utf8')) as PyRecord);
      } catch {
        // Not written.
      }
    }
  }
  return new Map([...out].sort(([a], [b]) => a.localeCompare(b)));
}

test("a Python script gets torchrun's environment, and rank 0 can listen on MASTER_PORT", { skip: py.skip, timeout: 60_000 }, async () => {
  const out = tempDir('py-env');
  const { OMP_NUM_THREADS: _omp, NCCL_ASYNC_ERROR_HANDLING: _nccl, TORCHELASTIC_USE_AGENT_STORE: _store, ...inherited } = process.env;
  const launch = startLauncher(['--nproc-per-node', '2', '--run-id', 'pyrun', '--max-restarts', '2', PY_WORKER, '--out', out, '--bind-master', '--x', '1 2'], {
    ...(inherited as Record<string, string>),
    ...ENV,
    TORCHELASTIC_USE_AGENT_STORE: 'True',
  });
  const r = await launch.done;
  assert.equal(r.code, 0, r.stderr);
  const recs = records(out);
  assert.deepEqual([...recs.keys()], ['attempt_0_rank_0', 'attempt_0_rank_1']);
  const port = recs.get('attempt_0_rank_0')?.env.MASTER_PORT ?? '';
  for (const [rank, rec] of [...recs.values()].entries()) {
    const expected: Record<string, string> = {
      MASTER_ADDR: '127.0.0.1',
      MASTER_PORT: port,
      RANK: String(rank),
      LOCAL_RANK: String(rank),
      WORLD_SIZE: '2',
      LOCAL_WORLD_SIZE: '2',
      GROUP_RANK: '0',
      GROUP_WORLD_SIZE: '1',
      ROLE_NAME: 'default',
      ROLE_RANK: String(rank),
      ROLE_WORLD_SIZE: '2',
      TORCHELASTIC_RESTART_COUNT: '0',
      TORCHELASTIC_MAX_RESTARTS: '2',
      TORCHELASTIC_RUN_ID: 'pyrun',
      // The workers host their own store on MASTER_PORT, whatever the launcher inherited.
      TORCHELASTIC_USE_AGENT_STORE: 'False',
      OMP_NUM_THREADS: '1',
      NCCL_ASYNC_ERROR_HANDLING: '1',
    };
    for (const [name, value] of Object.entries(expected)) assert.equal(rec.env[name], value, `rank ${rank}: ${name}`);
    assert.match(rec.env.TORCHELASTIC_ERROR_FILE ?? '', new RegExp(`/pyrun/attempt_0/${rank}/error\\.json$`));
    assert.deepEqual(rec.argv, [PY_WORKER, '--out', out, '--bind-master', '--x', '1 2'], 'python SCRIPT ARGS, arguments untouched');
  }
  assert.match(port, /^\d+$/);
});

test("a single Python worker keeps the user's threads, as under torchrun", { skip: py.skip, timeout: 60_000 }, async () => {
  const out = tempDir('py-omp');
  const { OMP_NUM_THREADS: _omp, ...inherited } = process.env;
  const r = await runLauncher([PY_WORKER, '--out', out], { ...(inherited as Record<string, string>), ...ENV });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(records(out).get('attempt_0_rank_0')?.env.OMP_NUM_THREADS, undefined, 'one worker: OMP_NUM_THREADS not set');
  const kept = tempDir('py-omp-kept');
  const k = await runLauncher(['--nproc-per-node', '2', PY_WORKER, '--out', kept], { ...ENV, OMP_NUM_THREADS: '3' });
  assert.equal(k.code, 0, k.stderr);
  assert.deepEqual(
    [...records(kept).values()].map((rec) => rec.env.OMP_NUM_THREADS),
    ['3', '3'],
    "a user's value is kept",
  );
});

test('on several nodes MASTER_PORT stays free for rank 0: the launchers listen on the next port only', { skip: py.skip, timeout: 90_000 }, async () => {
  const port = await freePortPair();
  const secretFile = join(tempDir('py-mn'), 'secret');
  writeFileSync(secretFile, 'e'.repeat(64));
  const out = tempDir('py-mn-out');
  const node = (rank: number) => [
    '--nnodes',
    '2',
    '--node-rank',
    String(rank),
    '--master-port',
    String(port),
    '--secret-file',
    secretFile,
    PY_WORKER,
    '--out',
    out,
    '--bind-master',
    '--sleep',
    '0.5',
  ];
  const [r0, r1] = await Promise.all([runLauncher(node(0), ENV), runLauncher(node(1), ENV)]);
  assert.equal(r0.code, 0, r0.stderr);
  assert.equal(r1.code, 0, r1.stderr);
  const recs = records(out);
  assert.deepEqual([...recs.keys()], ['attempt_0_rank_0', 'attempt_0_rank_1']);
  assert.deepEqual(
    [...recs.values()].map((rec) => [rec.env.MASTER_PORT, rec.env.GROUP_RANK, rec.env.WORLD_SIZE]),
    [
      [String(port), '0', '2'],
      [String(port), '1', '2'],
    ],
  );
});

test('a SIGKILLed Python worker is named with the signal', { skip: py.skip, timeout: 60_000 }, async () => {
  const r = await runLauncher(['--nproc-per-node', '2', PY_WORKER, '--fail-rank', '1', '--how', 'sigkill', '--sleep', '30'], ENV);
  assert.equal(r.code, 1, r.stderr);
  const summary = r.stderr.slice(r.stderr.indexOf('root cause'));
  assert.match(summary, /root cause \(first failure\):\n.*rank 1 \(local rank 1, node 0 [^)]*\) was killed by SIGKILL/);
});

test('Ctrl-C: no Python process is left', { skip: py.skip, timeout: 60_000 }, async () => {
  const out = tempDir('py-int');
  const launch = startLauncher(['--nproc-per-node', '2', PY_WORKER, '--out', out, '--sleep', '60'], ENV);
  await waitFor('both workers to start', () => records(out).size === 2);
  const pids = [...records(out).values()].map((rec) => rec.pid);
  assert.ok(pids.every(isAlive));
  launch.child.kill('SIGINT');
  const r = await launch.done;
  assert.equal(r.code, 130, r.stderr);
  assert.deepEqual(pids.filter(isAlive), [], 'no Python worker outlives the launcher');
});

const setpriv = spawnSync('setpriv', ['--help'], { encoding: 'utf8' });
const noSetpriv = setpriv.status === 0 && setpriv.stdout.includes('--pdeathsig') ? undefined : 'no setpriv with --pdeathsig (util-linux) on this host';

test('SIGKILL of the launcher leaves no Python orphans', { skip: py.skip ?? noSetpriv, timeout: 60_000 }, async () => {
  const out = tempDir('py-orphan');
  const launch = startLauncher(['--nproc-per-node', '2', PY_WORKER, '--out', out, '--sleep', '60'], ENV);
  await waitFor('both workers to start', () => records(out).size === 2);
  const workers = [...records(out).values()];
  assert.deepEqual(
    workers.map((w) => w.ppid),
    [launch.child.pid, launch.child.pid],
    'setpriv execs Python: the launcher is the parent',
  );
  launch.child.kill('SIGKILL');
  await launch.done;
  await waitFor('the orphaned workers to exit', () => workers.every((w) => !isAlive(w.pid)), 15_000);
});

test('--max-restarts 1 restarts the Python group with TORCHELASTIC_RESTART_COUNT=1', { skip: py.skip, timeout: 60_000 }, async () => {
  const out = tempDir('py-restart');
  const r = await runLauncher(
    ['--nproc-per-node', '2', '--max-restarts', '1', PY_WORKER, '--out', out, '--fail-rank', '1', '--how', 'exit:3', '--fail-attempts', '1', '--sleep', '1'],
    ENV,
  );
  assert.equal(r.code, 0, r.stderr);
  const recs = records(out);
  assert.deepEqual([...recs.keys()], ['attempt_0_rank_0', 'attempt_0_rank_1', 'attempt_1_rank_0', 'attempt_1_rank_1']);
  assert.deepEqual(
    [...recs.values()].map((rec) => rec.env.TORCHELASTIC_RESTART_COUNT),
    ['0', '0', '1', '1'],
  );
  assert.match(r.stderr, /restart/);
});

test('--no-python runs a shell script as the worker', { timeout: 60_000 }, async () => {
  const dir = tempDir('sh');
  const script = join(dir, 'worker.sh');
  writeFileSync(script, '#!/bin/sh\necho "$RANK $WORLD_SIZE $TORCHELASTIC_RESTART_COUNT $*" > "$1/rank_$RANK.txt"\n');
  chmodSync(script, 0o755);
  for (const flag of ['--no-python', '--no_python']) {
    const r = await runLauncher(['--nproc-per-node', '2', flag, script, dir, 'a b']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      [0, 1].map((rank) => readFileSync(join(dir, `rank_${rank}.txt`), 'utf8')),
      [`0 2 0 ${dir} a b\n`, `1 2 0 ${dir} a b\n`],
    );
  }
});

test('-m runs a Python module', { skip: py.skip, timeout: 60_000 }, async () => {
  for (const flag of ['-m', '--module']) {
    const out = tempDir('py-mod');
    const r = await runLauncher(['--nproc-per-node', '2', flag, 'py_worker', '--out', out], { ...ENV, PYTHONPATH: FIXTURES });
    assert.equal(r.code, 0, r.stderr);
    const recs = [...records(out).values()];
    assert.equal(recs.length, 2);
    for (const rec of recs) assert.deepEqual(rec.argv, [PY_WORKER, '--out', out], 'python -m py_worker: sys.argv[0] is the module file');
  }
});

test('a program of another kind gets one line saying what is accepted', { timeout: 30_000 }, async () => {
  const rb = join(tempDir('rb'), 'train.rb');
  writeFileSync(rb, 'puts 1\n');
  for (const program of [rb, 'no_such_script.rb']) {
    const r = await runLauncher(['--nproc-per-node', '2', program]);
    assert.equal(r.code, 2);
    assert.deepEqual(launcherLines(r.stderr), [r.stderr.trimEnd()], 'one line, nothing else');
    assert.match(
      r.stderr,
      /^rosedist: program ".*\.rb" is neither a \.js\/\.mjs\/\.ts nor a \.py file \(pass train_ddp, train_minimal, a \.js\/\.mjs\/\.ts or \.py file, -m MODULE, or --no-python EXECUTABLE\)\n$/,
    );
  }
});

test('a Python worker that raises under @record: the summary names its rank and shows its exception', { skip: torch.skip, timeout: 90_000 }, async () => {
  const r = await runLauncher(['--nproc-per-node', '2', PY_WORKER, '--record', '--fail-rank', '1', '--how', 'raise:rank 1 fails on purpose', '--sleep', '60'], {
    PYTHON: torch.python ?? '',
  });
  assert.equal(r.code, 1, r.stderr);
  const summary = r.stderr.slice(r.stderr.indexOf('root cause'));
  assert.match(summary, /root cause \(first failure\):\n.*rank 1 \(local rank 1, node 0 [^)]*\) exited with code 1 at /);
  assert.match(summary, /\n.*message: ValueError: rank 1 fails on purpose\n/);
  assert.match(summary, /\n.*traceback: File ".*py_worker\.py", line \d+, in fail_here → ValueError: rank 1 fails on purpose\n?/);
  assert.doesNotMatch(summary, /other failures/, 'rank 0 was stopped by the launcher, not failed');
});
