/**
 * The launcher and train_ddp together, under faults (real processes, ZeroMQ on loopback):
 *   - a worker SIGKILLed at a random step after the first checkpoint, with --max-restarts and
 *     --resume: the group restarts from the checkpoint and ends exactly where an uninterrupted run
 *     ends (the kill comes from the ROSEDIST_TEST_KILL_AT test hook, worker/test_hooks.ts);
 *   - a worker SIGSTOPped by this test: the other rank's collective times out naming it, the
 *     launcher tears the group down, every process is gone, and the run's temporary directory too.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parseMetrics, type MetricsRecord } from '../../shared/metrics.js';
import { decodeSafetensors } from '../../worker/safetensors.js';
import { isAlive, launcherLines, startLauncher, waitFor } from '../helpers/launcher_run.js';
import { tinyGpt } from '../helpers/tiny_gpt.js';

const TINY = tinyGpt({ 'batch-size': 2, dataset: 'toy:60' });

const root = mkdtempSync(join(tmpdir(), 'rosedist-elastic-'));
after(() => rmSync(root, { recursive: true, force: true }));

interface Files {
  readonly log: string;
  readonly metrics: string;
  readonly checkpoint: string;
}

function files(name: string): Files {
  const dir = join(root, name);
  return { log: join(dir, 'train.log'), metrics: join(dir, 'train.metrics.jsonl'), checkpoint: join(dir, 'ckpt.safetensors') };
}

const trainArgs = (f: Files, extra: string[]) => [...TINY, '--log-file', f.log, '--checkpoint-path', f.checkpoint, ...extra];
const readMetrics = (f: Files): MetricsRecord[] => parseMetrics(readFileSync(f.metrics, 'utf8'));

/** pids of every descendant of `pid` (from /proc). */
function descendants(pid: number): number[] {
  const parentOf = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      parentOf.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // Gone meanwhile.
    }
  }
  const found: number[] = [];
  const walk = (p: number): void => {
    for (const [child, parent] of parentOf) if (parent === p) (found.push(child), walk(child));
  };
  walk(pid);
  return found;
}

/** A process's environment variables (from /proc). */
function environOf(pid: number): Record<string, string> {
  const entries = readFileSync(`/proc/${pid}/environ`, 'utf8')
    .split('\0')
    .filter((e) => e.includes('='));
  return Object.fromEntries(entries.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
}

describe('launcher + train_ddp under faults', () => {
  it('SIGKILL of a worker after its first checkpoint: restarted from the checkpoint, it ends like an uninterrupted run', { timeout: 180_000 }, async (t) => {
    const common = ['--num-steps', '8', '--eval-interval', '2', '--checkpoint-interval', '2', '--resume'];
    // A random rank dies when a random step begins, after the first checkpoint (step 2).
    const rank = Math.floor(Math.random() * 2);
    const step = 3 + Math.floor(Math.random() * 6);
    const resumedFrom = 2 * Math.floor((step - 1) / 2);
    t.diagnostic(`rank ${rank} killed when step ${step} began; the last checkpoint was step ${resumedFrom}'s`);

    const killed = files('killed');
    const launch = startLauncher(['--nproc-per-node', '2', '--max-restarts', '2', 'train_ddp', ...trainArgs(killed, common)], {
      ROSEDIST_TEST_KILL_AT: `${step}:${rank}`,
    });
    const r = await launch.done;
    assert.equal(r.code, 0, r.stderr);
    const lines = launcherLines(r.stderr);
    assert.ok(
      lines.some((l) => l.includes(`rank ${rank} (local rank ${rank}, node 0) was killed by SIGKILL; restarting the group (restart 1 of 2)`)),
      lines.join('\n'),
    );
    assert.ok(
      lines.some((l) => /succeeded on attempt 1/.test(l)),
      lines.join('\n'),
    );
    // Said when it happens, before the teardown: which rank died, and how.
    const died = lines.findIndex((l) => new RegExp(`^\\[rosedist\\] rank ${rank} \\(local rank ${rank}, node 0, pid \\d+\\) was killed by SIGKILL$`).test(l));
    const stopping = lines.findIndex((l) => /sending SIGTERM/.test(l));
    assert.ok(died >= 0 && died < stopping, lines.join('\n'));
    const log = readFileSync(killed.log, 'utf8');
    assert.match(log, new RegExp(`attempt 1 \\(restart 1 of 2\\) resumed from step ${resumedFrom} of checkpoint ${killed.checkpoint}`));

    const straight = files('straight');
    const s = await startLauncher(['--nproc-per-node', '2', '--max-restarts', '2', 'train_ddp', ...trainArgs(straight, common)]).done;
    assert.equal(s.code, 0, s.stderr);
    assert.doesNotMatch(readFileSync(straight.log, 'utf8'), /restart/);

    // Every evaluation, the replayed ones included, equals the uninterrupted run's at that step.
    const reference = new Map(readMetrics(straight).map((m) => [m.step, m]));
    const got = readMetrics(killed);
    for (const m of got) {
      const ref = reference.get(m.step);
      assert.ok(ref, `step ${m.step}`);
      assert.deepEqual([m.train_loss, m.val_loss, m.tokens_seen], [ref.train_loss, ref.val_loss, ref.tokens_seen], `step ${m.step}`);
    }
    const last = got.at(-1);
    assert.ok(last);
    assert.deepEqual([last.step, last.val_loss], [8, reference.get(8)?.val_loss]);
    const bytes = (p: string) => decodeSafetensors(readFileSync(p), p).dataSection;
    assert.deepEqual(bytes(killed.checkpoint), bytes(straight.checkpoint), 'the final weights and optimizer state are identical');
  });

  it(
    "SIGSTOP of a worker: the other names it, the op and its sequence number; every process and the run's temporary directory are gone",
    { timeout: 120_000 },
    async (t) => {
      const f = files('stopped');
      const launch = startLauncher([
        '--nproc-per-node',
        '2',
        'train_ddp',
        ...trainArgs(f, ['--num-steps', '100000', '--eval-interval', '2', '--checkpoint-interval', '100000', '--collective-timeout', '3']),
      ]);
      const launcherPid = launch.child.pid ?? 0;
      await waitFor('a first evaluation', () => existsSync(f.metrics) && readFileSync(f.metrics, 'utf8').length > 0, 60_000);
      const pids = descendants(launcherPid);
      const byRank = new Map(pids.map((pid) => [environOf(pid).RANK, pid]));
      const victim = byRank.get('1');
      assert.ok(victim !== undefined && byRank.has('0'), JSON.stringify([...byRank]));
      const runTmp = environOf(victim).ROSEDIST_TMPDIR ?? '';
      assert.ok(
        readdirSync(runTmp).some((n) => n.startsWith('rosedist-pg-')),
        "the ipc sockets live in the run's directory",
      );

      process.kill(victim, 'SIGSTOP');
      const stoppedAt = Date.now();
      const r = await launch.done;
      await waitFor('every worker to be gone', () => pids.every((p) => !isAlive(p)), 30_000);
      t.diagnostic(`SIGSTOP → launcher and workers gone: ${Date.now() - stoppedAt} ms (collective timeout 3 s)`);

      assert.equal(r.code, 1, r.stderr);
      const summary = launcherLines(r.stderr).join('\n');
      const m =
        /root cause \(first failure\):\n.*rank 0 \(local rank 0.*\) exited with code 1 at .*\n.*message: CommError: #(\d+) (\w+)\(.*\) on rank 0 timed out after 3 s; ranks that did not take part: 1 on [^(]*\(no answer/.exec(
          summary,
        );
      assert.ok(m, summary);
      assert.match(summary, new RegExp(`last collectives \\(oldest first\\):(\\n.*: done)*\\n.*#${m[1]} ${m[2]}\\(.*\\), \\d+ bytes: failed`));
      assert.doesNotMatch(summary, /still running after the grace period/, 'the stopped worker acted on SIGTERM (it was continued)');
      assert.ok(!existsSync(runTmp), `${runTmp} removed`);
    },
  );
});
