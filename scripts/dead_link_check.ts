/**
 * The dead-link check of scripts/cluster_test.sh (issue 15), on a namespace cluster that is up
 * (netns-cluster.sh up 2: hosts n1 10.77.0.11 and n2 10.77.0.12). train_ddp on a tiny model,
 * one launcher per host, one worker each, --collective-timeout 5. Once steps go by, n2's link
 * goes dead: nftables on n2 drops every packet in and out of eth0 for 30 s (no RST, no FIN:
 * silence, as a pulled cable or a dead switch port). Every rank must then fail on its own, after
 * the collective timeout plus the probe window (5 + 1.25 s) and a few seconds of exit, naming the
 * collective (op and sequence number) and the other host's address — never hang until the link
 * comes back. The launchers then end too, once their heartbeats (15 s) find the other host
 * lost. Prints a table; exit code 1 if the check failed.
 *   node --import tsx scripts/dead_link_check.ts
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { packagePath } from '../shared/runtime.js';
import { tinyGpt } from '../test/helpers/tiny_gpt.js';

const ROOT = packagePath('.');
const BIN = join(ROOT, 'bin/rosedist.mjs');
const TIMEOUT_S = 5;
/** How long after the cut every rank's error must be out: timeout, probe window, a few seconds. */
const ERROR_LIMIT_S = TIMEOUT_S + 1.25 + 4;
/** How long after the cut every launcher must have ended: the launchers' heartbeat timeout (15 s) and exit. */
const EXIT_LIMIT_S = 15 + 6;
const DEAD_S = 30;
const TINY = tinyGpt({
  'batch-size': 2,
  dataset: 'toy:60',
  'num-steps': 100000,
  'eval-interval': 100000,
  'checkpoint-interval': 100000,
  'collective-timeout': TIMEOUT_S,
});
/** /tmp is shared by the namespaces, as a cluster's home would be. */
const T = mkdtempSync('/tmp/rosedist-dead-link-');
const SECRET = join(T, 'secret');
writeFileSync(SECRET, randomBytes(32).toString('hex'));
const HOSTS = { n1: '10.77.0.11', n2: '10.77.0.12' } as const;

interface Launch {
  readonly child: ChildProcess;
  out(): string;
  readonly done: Promise<{ code: number | null; at: number }>;
  /** When the output first matched `pattern` (Date.now()), once watched. */
  firstMatch(pattern: RegExp): number | undefined;
}

/** `args` in namespace `ns` under its own host name (a UTS namespace), as on a real host. */
function onHost(ns: string, cmd: string, args: readonly string[]): Launch {
  const argv = ['ip', 'netns', 'exec', ns, 'unshare', '--uts', 'sh', '-c', `hostname ${ns} && exec "$@"`, 'sh', cmd, ...args];
  const child = spawn(argv[0] as string, argv.slice(1), { cwd: ROOT, env: { ...process.env, ROSEDIST_STOP_GRACE_S: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const watched = new Map<RegExp, number>();
  const patterns: RegExp[] = [];
  const onData = (c: Buffer): void => {
    out += c.toString();
    for (const p of patterns) if (!watched.has(p) && p.test(out)) watched.set(p, Date.now());
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const done = new Promise<{ code: number | null; at: number }>((resolve) => child.on('close', (code) => resolve({ code, at: Date.now() })));
  const firstMatch = (p: RegExp): number | undefined => {
    if (!patterns.includes(p)) patterns.push(p);
    if (!watched.has(p) && p.test(out)) watched.set(p, Date.now());
    return watched.get(p);
  };
  return { child, out: () => out, done, firstMatch };
}

function sh(cmd: string, args: readonly string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    child.on('close', (code) => resolve({ code, out }));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** nftables on n2: drop every packet in and out of eth0 (loopback untouched). */
async function cut(): Promise<void> {
  const nft = (...a: string[]) => sh('ip', ['netns', 'exec', 'n2', 'nft', ...a]);
  for (const r of [
    await nft('add', 'table', 'inet', 'deadlink'),
    await nft('add', 'chain', 'inet', 'deadlink', 'in', '{ type filter hook prerouting priority -500; policy accept; }'),
    await nft('add', 'chain', 'inet', 'deadlink', 'out', '{ type filter hook output priority -500; policy accept; }'),
    await nft('add', 'rule', 'inet', 'deadlink', 'in', 'iifname', 'eth0', 'drop'),
    await nft('add', 'rule', 'inet', 'deadlink', 'out', 'oifname', 'eth0', 'drop'),
  ]) {
    if (r.code !== 0) throw new Error(`nft failed: ${r.out.trim()}`);
  }
}

const heal = () => sh('ip', ['netns', 'exec', 'n2', 'nft', 'delete', 'table', 'inet', 'deadlink']);

async function main(): Promise<boolean> {
  const log = join(T, 'train.log');
  const common = ['--nnodes', '2', '--master-addr', 'n1', '--master-port', '29510', '--secret-file', SECRET, '--nproc-per-node', '1'];
  const train = ['train_ddp', ...TINY, '--log-file', log, '--checkpoint-path', join(T, 'ckpt.safetensors')];
  const n1 = onHost('n1', process.execPath, [BIN, ...common, '--node-rank', '0', ...train]);
  const n2 = onHost('n2', process.execPath, [BIN, ...common, '--node-rank', '1', ...train]);
  const launches = { n1, n2 };
  try {
    const end = Date.now() + 180_000;
    // Rank 0's progress line of step 1 (the first), then a few seconds of steps.
    while (!/step 1\/100000/.test(n1.out())) {
      if (Date.now() > end) throw new Error(`no progress: ${n1.out().slice(-400)}`);
      if (n1.child.exitCode !== null || n2.child.exitCode !== null)
        throw new Error(`a launcher ended before the cut: n1: ${n1.out().slice(-300)} n2: ${n2.out().slice(-300)}`);
      await sleep(200);
    }
    await sleep(3000);
    const named = (other: string) =>
      new RegExp(
        `#\\d+ (allReduce|reduceScatter|allGatherChunks|broadcast|allGather|barrier)\\([^)]*\\) on rank \\d timed out after ${TIMEOUT_S} s; ranks that did not take part: \\d on ${other.replaceAll('.', '\\.')}[^(]*`,
      );
    const errorOf = { n1: named(HOSTS.n2), n2: named(HOSTS.n1) };
    n1.firstMatch(errorOf.n1);
    n2.firstMatch(errorOf.n2);
    await cut();
    const t0 = Date.now();
    const healed = sleep(DEAD_S * 1000).then(heal);
    const deadline = sleep(DEAD_S * 1000).then(() => undefined);
    const ends = await Promise.all([n1.done, n2.done].map((d) => Promise.race([d, deadline])));
    const rows: string[] = [];
    let ok = true;
    for (const [ns, l] of Object.entries(launches) as [keyof typeof HOSTS, Launch][]) {
      const other = ns === 'n1' ? HOSTS.n2 : HOSTS.n1;
      const e = ends[ns === 'n1' ? 0 : 1];
      const seconds = e === undefined ? Number.NaN : (e.at - t0) / 1000;
      const text = l.out();
      const at = l.firstMatch(errorOf[ns]);
      const errorS = at === undefined ? Number.NaN : (at - t0) / 1000;
      const pass = e !== undefined && e.code !== 0 && seconds <= EXIT_LIMIT_S && errorS <= ERROR_LIMIT_S;
      ok &&= pass;
      const line =
        errorOf[ns].exec(text)?.[0] ??
        text
          .split('\n')
          .filter((x) => x.trim() !== '')
          .slice(-3)
          .join(' / ');
      rows.push(
        `| ${ns} | ${Number.isNaN(errorS) ? 'none' : `${errorS.toFixed(1)} s`} | ${e === undefined ? `still running after ${DEAD_S} s` : `exit ${e.code} after ${seconds.toFixed(1)} s`} | ${pass ? 'pass' : 'FAIL'} | ${line.replaceAll('|', '/')} |`,
      );
    }
    console.log(
      `dead link: n2's eth0 dropped everything for ${DEAD_S} s, 3 s into training; --collective-timeout ${TIMEOUT_S}; limits after the cut: the named error ${ERROR_LIMIT_S} s, the launcher's exit ${EXIT_LIMIT_S} s\n`,
    );
    console.log('| host | named error after | launcher | result | error |\n|---|---|---|---|---|');
    for (const r of rows) console.log(r);
    if (!ok) console.log(`\nfiles kept in ${T}; n1's output:\n${n1.out().slice(-2000)}\nn2's output:\n${n2.out().slice(-2000)}`);
    void healed;
    return ok;
  } finally {
    for (const l of [n1, n2]) if (l.child.exitCode === null) l.child.kill('SIGKILL');
    await heal();
  }
}

let ok = false;
try {
  ok = await main();
} catch (e) {
  console.error(`dead link check: ${(e as Error).message}`);
} finally {
  process.exitCode = ok ? 0 : 1;
  if (ok) rmSync(T, { recursive: true, force: true });
}
