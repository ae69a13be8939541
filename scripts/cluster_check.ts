/**
 * The checks of scripts/cluster_test.sh, run on a namespace cluster that is up (netns-cluster.sh
 * up 2: slurmctld in `ctl`, slurmd in `n1`, `n2`; root, SLURM_CONF set). Every run is train_ddp on
 * a tiny model (seed 0), 4 workers, through the real tools:
 *   reference   rosedist --nproc-per-node 4 on this host
 *   launcher    sbatch scripts/slurm/train_ddp.sbatch: srun starts one launcher per node
 *   srun        sbatch scripts/slurm/train_ddp_srun.sbatch: srun starts every worker
 *   mpirun      sbatch scripts/slurm/train_ddp_mpirun.sbatch: mpirun inside the allocation
 *   mpirun -np 4 on this host, outside Slurm
 * Each must end with rank 0's val loss within 1e-6 of the reference's, its log written by rank 0
 * alone. Then, on long launcher runs: SIGKILL of a worker on n2 must end the job with the summary
 * on rank 0's node (task 0) naming n2, the rank and pid; a launcher on n2 with another key must be
 * refused; `scancel` must leave no rosedist process on either node. Prints a table; exit code 1 if
 * any check failed.
 *   SLURM_CONF=... node --import tsx scripts/cluster_check.ts
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { derivedPort } from '../shared/scheduler_env.js';
import { packagePath } from '../shared/runtime.js';
import { runProcess } from '../shared/subprocess.js';
import { tinyGpt } from '../test/helpers/tiny_gpt.js';
import { CheckResults } from './check_results.js';

const ROOT = packagePath('.');
const BIN = join(ROOT, 'bin/rosedist.mjs');
const TINY = tinyGpt({ 'vocab-size': 256, 'd-model': 32, 'd-ff': 64, 'batch-size': 2, 'seq-len': 16, dataset: 'toy:64', backend: 'wasm', seed: 0 });
const SHORT = [...TINY, '--num-steps', '4', '--eval-interval', '2', '--checkpoint-interval', '4'];
const LONG = [...TINY, '--num-steps', '100000', '--eval-interval', '100000', '--checkpoint-interval', '100000'];
const JOB_LIMIT_MS = 240_000;
/** /tmp is shared by the namespaces, as a cluster's home would be. */
const T = mkdtempSync('/tmp/rosedist-cluster-');
/** The user key the jobs derive their secrets from: made by whichever process needs it first. */
const KEY = join(T, 'key');

const checks = new CheckResults({ errorLines: 6, secondsHeading: 's', passWord: 'pass' });
const submitted: string[] = [];

/** Run to the end in the checkout; `out` is stdout then stderr. */
async function run(cmd: string, args: readonly string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string }> {
  const r = await runProcess(cmd, args, { cwd: ROOT, env });
  return { code: r.code, out: r.stdout + r.stderr };
}

const inNs = (ns: string, args: readonly string[], env: Record<string, string> = {}) => run('ip', ['netns', 'exec', ns, ...args], env);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** sbatch SCRIPT ARGS from ctl, output labelled by task (0: node 0's launcher); the job id. */
async function submit(name: string, script: string, args: readonly string[], env: Record<string, string> = {}): Promise<{ id: string; out: string }> {
  const out = join(T, `${name}.out`);
  const r = await inNs('ctl', ['sbatch', '--parsable', '-J', name, '-o', out, `scripts/slurm/${script}`, ...args], {
    ROSEDIST_KEY_FILE: KEY,
    SLURM_LABELIO: '1',
    ...env,
  });
  const id = r.out.trim().split(';')[0] ?? '';
  if (r.code !== 0 || !/^\d+$/.test(id)) throw new Error(`sbatch ${script} failed: ${r.out.trim()}`);
  submitted.push(id);
  return { id, out };
}

async function jobState(id: string): Promise<string> {
  const r = await inNs('ctl', ['scontrol', '-o', 'show', 'job', id]);
  return /JobState=(\S+)/.exec(r.out)?.[1] ?? 'UNKNOWN';
}

/** Wait for the job to end; its final state. */
async function waitJob(id: string, limitMs = JOB_LIMIT_MS): Promise<string> {
  const end = Date.now() + limitMs;
  for (;;) {
    const state = await jobState(id);
    if (!['PENDING', 'CONFIGURING', 'RUNNING', 'COMPLETING', 'SUSPENDED'].includes(state)) return state;
    if (Date.now() > end) return `still ${state} after ${limitMs / 1000} s`;
    await sleep(250);
  }
}

interface Proc {
  readonly pid: number;
  readonly cmd: string;
  readonly rank: string | undefined;
}

/** rosedist processes (launchers, npx, workers; not the Slurm daemons) in namespace `ns`. */
async function nodeProcs(ns: string): Promise<Proc[]> {
  const r = await run('ip', ['netns', 'pids', ns]);
  const procs: Proc[] = [];
  for (const pid of r.out
    .split('\n')
    .filter((l) => /^\d+$/.test(l))
    .map(Number)) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (!/bin\/rosedist\.mjs|npm exec rosedist|worker\/train_ddp\.ts/.test(cmd)) continue;
      const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      procs.push({ pid, cmd, rank: env.find((e) => e.startsWith('RANK='))?.slice(5) });
    } catch {
      // Gone meanwhile.
    }
  }
  return procs;
}

const workersOf = async (ns: string) => (await nodeProcs(ns)).filter((p) => p.rank !== undefined && /train_ddp\.ts/.test(p.cmd));

async function until(what: string, cond: () => Promise<boolean>, limitMs = JOB_LIMIT_MS): Promise<void> {
  const end = Date.now() + limitMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await sleep(200);
  }
}

/** Rank 0's last val loss, full precision (the metrics file next to the log). */
function finalValLoss(log: string): number {
  const lines = readFileSync(log.replace(/\.log$/, '.metrics.jsonl'), 'utf8')
    .trim()
    .split('\n');
  const last = JSON.parse(lines[lines.length - 1] ?? '{}') as { val_loss?: number };
  if (typeof last.val_loss !== 'number') throw new Error(`no val_loss in ${log}`);
  return last.val_loss;
}

function logFiles(name: string): string[] {
  return ['--log-file', join(T, name, 'train.log'), '--checkpoint-path', join(T, name, 'ckpt.safetensors')];
}

/** One short training run through sbatch; its val loss against the reference. */
async function trainThrough(name: string, script: string, reference: number, env: Record<string, string> = {}): Promise<string> {
  const job = await submit(name, script, [...SHORT, ...logFiles(name)], env);
  const state = await waitJob(job.id);
  const out = existsSync(job.out) ? readFileSync(job.out, 'utf8') : '(no output)';
  if (state !== 'COMPLETED')
    throw new Error(
      `job ${job.id} ended ${state}: ${out
        .split('\n')
        .filter((l) => /rosedist|Error|error/.test(l))
        .slice(-4)
        .join(' | ')}`,
    );
  const log = join(T, name, 'train.log');
  const checked = await run(process.execPath, ['--import', 'tsx', 'scripts/check_log.ts', log, '--expect-evals', '2']);
  if (checked.code !== 0) throw new Error(checked.out.trim());
  if (!/world size 4/.test(readFileSync(log, 'utf8'))) throw new Error(`${log} does not say world size 4`);
  const loss = finalValLoss(log);
  const diff = Math.abs(loss - reference);
  if (!(diff <= 1e-6)) throw new Error(`val loss ${loss} differs from the reference ${reference} by ${diff}`);
  return `job ${job.id}: val loss ${loss} (|Δ| ${diff.toExponential(1)}), log by rank 0 alone`;
}

async function main(): Promise<void> {
  await until('n1 and n2 to be idle', async () => ((await inNs('ctl', ['sinfo', '-h', '-N', '-o', '%T'])).out.match(/idle/g) ?? []).length === 2, 30_000);
  let reference = Number.NaN;
  await checks.check('reference: 4 workers on one host', async () => {
    const r = await run(process.execPath, [BIN, '--nproc-per-node', '4', 'train_ddp', ...SHORT, ...logFiles('reference')]);
    if (r.code !== 0) throw new Error(r.out.split('\n').slice(-5).join(' | '));
    reference = finalValLoss(join(T, 'reference', 'train.log'));
    return `val loss ${reference}`;
  });
  await checks.check('sbatch train_ddp.sbatch: srun, one launcher per node, 2 × 2 workers', () => trainThrough('launcher', 'train_ddp.sbatch', reference));
  await checks.check('sbatch train_ddp_srun.sbatch: srun starts the 2 × 2 workers', () => trainThrough('srun', 'train_ddp_srun.sbatch', reference));
  const asRoot: Record<string, string> = process.getuid?.() === 0 ? { OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1' } : {};
  await checks.check('sbatch train_ddp_mpirun.sbatch: mpirun inside the allocation, 2 × 2', () =>
    trainThrough('mpirun', 'train_ddp_mpirun.sbatch', reference, asRoot),
  );

  await checks.check('mpirun -np 4 on one host, outside Slurm', async () => {
    const args = [
      '-np',
      '4',
      '--oversubscribe',
      ...(process.getuid?.() === 0 ? ['--allow-run-as-root'] : []),
      process.execPath,
      '--import',
      'tsx',
      'worker/train_ddp.ts',
      ...SHORT,
      ...logFiles('mpirun-host'),
    ];
    const r = await run('mpirun', args, { ROSEDIST_KEY_FILE: KEY });
    if (r.code !== 0) throw new Error(r.out.split('\n').slice(-5).join(' | '));
    const loss = finalValLoss(join(T, 'mpirun-host', 'train.log'));
    const diff = Math.abs(loss - reference);
    if (!(diff <= 1e-6)) throw new Error(`val loss ${loss} differs from the reference ${reference} by ${diff}`);
    return `val loss ${loss} (|Δ| ${diff.toExponential(1)})`;
  });

  await checks.check("SIGKILL of a worker on n2 ends the job; summary on rank 0's node names n2", async () => {
    const job = await submit('kill', 'train_ddp.sbatch', [...LONG, ...logFiles('kill')]);
    await until("2 workers on n2 and rank 0's log", async () => (await workersOf('n2')).length === 2 && existsSync(join(T, 'kill', 'train.log')));
    const victim = (await workersOf('n2')).find((p) => p.rank === '2');
    if (victim === undefined) throw new Error('no rank 2 on n2');
    process.kill(victim.pid, 'SIGKILL');
    const t0 = Date.now();
    const state = await waitJob(job.id, 60_000);
    const ended = (Date.now() - t0) / 1000;
    const out = readFileSync(job.out, 'utf8');
    const summary = new RegExp(`^0: \\[rosedist\\]\\s+rank 2 \\(local rank 0, node 1 n2#1, pid ${victim.pid}\\) was killed by SIGKILL`, 'm');
    if (!/^0: \[rosedist\]\s+root cause \(first failure\):/m.test(out) || !summary.test(out)) {
      throw new Error(
        `no summary naming n2 from task 0 in ${job.out}: ${out
          .split('\n')
          .filter((l) => l.includes('[rosedist]'))
          .slice(-6)
          .join(' | ')}`,
      );
    }
    if (state !== 'FAILED') throw new Error(`job ${job.id} ended ${state}, not FAILED`);
    const left = [...(await nodeProcs('n1')), ...(await nodeProcs('n2'))];
    if (left.length > 0) throw new Error(`left behind: ${left.map((p) => `${p.pid} ${p.cmd.slice(0, 60)}`).join('; ')}`);
    return `job ${job.id} FAILED ${ended.toFixed(1)} s after the kill; task 0 printed "rank 2 (local rank 0, node 1 n2#1, pid ${victim.pid}) was killed by SIGKILL"`;
  });

  let running: { id: string; out: string } | undefined;
  await checks.check('a launcher on n2 with another key is refused by the running job', async () => {
    running = await submit('cancel', 'train_ddp.sbatch', [...LONG, ...logFiles('cancel')]);
    const job = running;
    await until(
      '2 workers on each node',
      async () => (await workersOf('n1')).length === 2 && (await workersOf('n2')).length === 2 && existsSync(join(T, 'cancel', 'train.log')),
    );
    const secret = join(T, 'stranger.secret');
    writeFileSync(secret, randomBytes(32).toString('hex'), { mode: 0o600 });
    const port = derivedPort(`slurm/${job.id}/0`);
    const r = await inNs('n2', [
      process.execPath,
      BIN,
      '--nnodes',
      '2',
      '--node-rank',
      '1',
      '--master-addr',
      'n1',
      '--master-port',
      String(port),
      '--secret-file',
      secret,
      'train_ddp',
    ]);
    if (r.code !== 2 || !/refused this launcher: authentication failed/.test(r.out)) throw new Error(`exit ${r.code}: ${r.out.trim()}`);
    return `exit 2: ${r.out.trim().slice(0, 110)}`;
  });
  await checks.check('scancel leaves no rosedist process on n1 or n2', async () => {
    if (running === undefined) throw new Error('no running job');
    await until('the job to run', async () => (await workersOf('n1')).length === 2 && (await workersOf('n2')).length === 2);
    await inNs('ctl', ['scancel', running.id]);
    const t0 = Date.now();
    await until('every rosedist process to end', async () => (await nodeProcs('n1')).length + (await nodeProcs('n2')).length === 0, 30_000);
    const gone = (Date.now() - t0) / 1000;
    const state = await waitJob(running.id, 30_000);
    return `job ${running.id} ${state}; the last rosedist process ended ${gone.toFixed(1)} s after scancel`;
  });

  checks.printTable();
  const failed = checks.failed();
  const total = checks.results.length;
  console.log(`\n${total - failed} of ${total} cluster checks passed${failed > 0 ? ` (files kept in ${T})` : ''}`);
  process.exitCode = failed > 0 ? 1 : 0;
}

try {
  await main();
} catch (e) {
  console.error(`cluster check: ${(e as Error).message}`);
  process.exitCode = 1;
} finally {
  // Nothing of ours may outlive the checks, whatever happened.
  if (submitted.length > 0) await inNs('ctl', ['scancel', ...submitted]);
  if (process.exitCode === 0) rmSync(T, { recursive: true, force: true });
}
