/**
 * Elastic membership (`--nnodes MIN:MAX`) with real launchers on loopback, each its own host as far
 * as the rendezvous knows (one worker each, TCP between them):
 *   - 3 launchers of train_ddp, one SIGKILLed mid-run → the others go on as 2 from the last
 *     checkpoint; a 4th launcher started then joins at the next round → 3 again; all steps done,
 *     rank 0's log says each change, and the final weights and optimizer state equal those of
 *     uninterrupted runs with the same world sizes over the same step ranges;
 *   - fewer than MIN launchers for --rdzv-timeout → each exits 1 with one line of counts;
 *   - node 0 (the rendezvous host) SIGKILLed → the others end, naming it.
 * The run is held at chosen steps by the ROSEDIST_TEST_HOLD_AT hook (worker/test_hooks.ts), so
 * that the kill and the join land mid-run whatever the machine's load.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { decodeSafetensors } from '../../worker/safetensors.js';
import { freePortPair } from '../helpers/launcher_ports.js';
import { FIXTURE, isAlive, launcherLines, startLauncher, waitFor, workerRecords, type Launch } from '../helpers/launcher_run.js';
import { tinyGpt } from '../helpers/tiny_gpt.js';

const TINY = tinyGpt({ 'batch-size': 2, dataset: 'toy:60' });

const root = mkdtempSync(join(tmpdir(), 'rosedist-membership-'));
after(() => rmSync(root, { recursive: true, force: true }));
const secretFile = join(root, 'secret');
writeFileSync(secretFile, randomBytes(32).toString('hex'));

function elastic(port: number, range: string, extra: string[] = []): string[] {
  return ['--nnodes', range, '--master-addr', '127.0.0.1', '--master-port', String(port), '--secret-file', secretFile, '--nproc-per-node', '1', ...extra];
}

const checkpointOf = (p: string) => decodeSafetensors(readFileSync(p), p).dataSection;

describe('elastic membership on loopback', () => {
  it(
    'a launcher SIGKILLed mid-run, then a new one joining: the run goes 3 → 2 → 3 and ends like uninterrupted runs of those sizes',
    { timeout: 300_000 },
    async (t) => {
      const port = await freePortPair();
      const dir = join(root, 'elastic');
      const ckpt = join(dir, 'ckpt.safetensors');
      const log = join(dir, 'train.log');
      const release = [join(root, 'release5'), join(root, 'release9')] as const;
      // Checkpoints every 2 steps; held when steps 5 and 9 begin: the rounds resume from 4 and 8.
      const train = [
        'train_ddp',
        ...TINY,
        '--num-steps',
        '12',
        '--eval-interval',
        '4',
        '--checkpoint-interval',
        '2',
        '--resume',
        '--log-file',
        log,
        '--checkpoint-path',
        ckpt,
      ];
      const env = { ROSEDIST_TEST_HOLD_AT: `5:${release[0]},9:${release[1]}` };
      const opts = ['--rdzv-last-call', '5', '--rdzv-timeout', '120', '--max-restarts', '2'];
      const host = startLauncher([...elastic(port, '2:3', opts), ...train], env);
      await waitFor('node 0 to host the rendezvous', () => /hosting the rendezvous/.test(host.stderr()), 60_000);
      const b = startLauncher([...elastic(port, '2:3', opts), ...train], env);
      const c = startLauncher([...elastic(port, '2:3', opts), ...train], env);
      await waitFor('round 0 to reach step 5', () => existsSync(`${release[0]}.held`), 180_000);
      assert.match(host.stderr(), /round 0: nodes 0=\S+, 1=\S+, 2=\S+, world size 3\n/);

      const killedAt = Date.now();
      c.child.kill('SIGKILL');
      await waitFor('round 1', () => /round 1: /.test(host.stderr()), 60_000);
      t.diagnostic(`SIGKILL of a launcher → round 1 decided by node 0: ${Date.now() - killedAt} ms (last call 5 s)`);
      writeFileSync(release[0], '');
      await waitFor('round 1 to reach step 9', () => existsSync(`${release[1]}.held`), 120_000);

      const d = startLauncher([...elastic(port, '2:3', opts), ...train], env);
      await waitFor('round 2', () => /round 2: /.test(host.stderr()), 60_000);
      writeFileSync(release[1], '');
      const [rh, rb, rd] = await Promise.all([host.done, b.done, d.done]);
      for (const r of [rh, rb, rd]) assert.equal(r.code, 0, r.stderr);
      assert.equal((await c.done).signal, 'SIGKILL');

      const lines = launcherLines(rh.stderr);
      t.diagnostic(lines.filter((l) => /round|lost|joined|waiting/.test(l)).join('\n'));
      const lost = /round 1: nodes 0=\S+, 1=\S+, world size 2; world size 3 → 2 \(node (\S+) lost\)/.exec(rh.stderr);
      const joined = /round 2: nodes 0=\S+, 1=\S+, 2=\S+, world size 3; world size 2 → 3 \(node (\S+) joined\)/.exec(rh.stderr);
      assert.ok(lost && joined, lines.join('\n'));
      assert.equal(lost[1]?.split(':')[1], String(c.child.pid), 'the lost node is the killed launcher');
      assert.equal(joined[1]?.split(':')[1], String(d.child.pid), 'the joined node is the new launcher');
      assert.match(rh.stderr, /succeeded on attempt 2/);
      const text = readFileSync(log, 'utf8');
      assert.ok(text.includes(`world size 3 → 2 (node ${lost[1]} lost) at step 4, resumed from checkpoint ${ckpt}`), text);
      assert.ok(text.includes(`world size 2 → 3 (node ${joined[1]} joined) at step 8, resumed from checkpoint ${ckpt}`), text);

      // The same sizes over the same step ranges, each phase a plain run resuming the previous one.
      const refCkpt = join(root, 'reference.safetensors');
      const reference = [
        'train_ddp',
        ...TINY,
        '--eval-interval',
        '4',
        '--checkpoint-interval',
        '2',
        '--resume',
        '--checkpoint-path',
        refCkpt,
        '--log-file',
        join(root, 'reference.log'),
      ];
      for (const [nproc, steps] of [
        [3, 4],
        [2, 8],
        [3, 12],
      ] as const) {
        const r = await startLauncher(['--nproc-per-node', String(nproc), ...reference, '--num-steps', String(steps)]).done;
        assert.equal(r.code, 0, r.stderr);
      }
      assert.deepEqual(checkpointOf(ckpt), checkpointOf(refCkpt), 'the final weights and optimizer state are identical');
    },
  );

  it(
    'fewer than MIN nodes for --rdzv-timeout: every launcher exits 1 with one line naming how many came and how many were needed',
    { timeout: 90_000 },
    async () => {
      const port = await freePortPair();
      const args = [...elastic(port, '3:4', ['--rdzv-timeout', '10', '--rdzv-last-call', '1']), FIXTURE];
      const first = startLauncher(args);
      await waitFor('node 0 to host the rendezvous', () => /hosting the rendezvous/.test(first.stderr()), 60_000);
      const second = startLauncher(args);
      // A launcher without the run's secret is refused, and does not count.
      const otherSecret = join(root, 'other-secret');
      writeFileSync(otherSecret, randomBytes(32).toString('hex'));
      const stranger = await startLauncher(args.map((a) => (a === secretFile ? otherSecret : a))).done;
      assert.equal(stranger.code, 2, stranger.stderr);
      const said = launcherLines(stranger.stderr);
      assert.equal(said.length, 1, stranger.stderr);
      assert.match(
        said[0] ?? '',
        new RegExp(
          `^rosedist: the rendezvous host at 127\\.0\\.0\\.1:${port + 1} refused this launcher: authentication failed \\(a different secret\\?\\) \\(start every node with the same`,
        ),
      );
      for (const r of await Promise.all([first.done, second.done])) {
        assert.equal(r.code, 1, r.stderr);
        const failed = launcherLines(r.stderr).filter((l) => /rendezvous failed/.test(l));
        assert.deepEqual(failed, ['[rosedist] rendezvous failed: 2 of the 3 nodes needed (--nnodes 3:4) joined within --rdzv-timeout 10 s'], r.stderr);
        assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
      }
      assert.match((await first.done).stderr, /rejected a control connection from 127\.0\.0\.1:\d+: authentication failed/);
    },
  );

  it('node 0 (the rendezvous host) SIGKILLed: the other launchers stop their workers and fail naming it', { timeout: 90_000 }, async () => {
    const port = await freePortPair();
    const out = mkdtempSync(join(root, 'host-lost-'));
    const args = [...elastic(port, '2:3', ['--rdzv-last-call', '20']), FIXTURE, '--out', out, '--sleep', '120000'];
    const host = startLauncher(args);
    await waitFor('node 0 to host the rendezvous', () => /hosting the rendezvous/.test(host.stderr()), 60_000);
    const others: Launch[] = [startLauncher(args), startLauncher(args)];
    await waitFor('three workers', () => existsSync(out) && workerRecords(out).size === 3, 90_000);
    const pids = [...workerRecords(out).values()].map((r) => r.pid);
    host.child.kill('SIGKILL');
    for (const r of await Promise.all(others.map((o) => o.done))) {
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`reason: lost node 0, the rendezvous host at 127\\.0\\.0\\.1:${port + 1} \\(connection closed\\)`));
    }
    await waitFor('every worker to be gone', () => pids.every((p) => !isAlive(p)), 30_000);
  });
});
