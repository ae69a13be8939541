/**
 * Faults inside a training run, over real worker processes (train_ddp, ZeroMQ on loopback, started
 * with the environment contract by test/helpers/workers.ts): a NaN gradient (injected by the
 * ROSEDIST_TEST_INJECT_NAN test hook, worker/test_hooks.ts) and an unwritable checkpoint path.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { decodeSafetensors } from '../../worker/safetensors.js';
import { freePort, spawnWorkers } from '../helpers/workers.js';
import { tinyGpt } from '../helpers/tiny_gpt.js';
import { trainDdpIn, type TrainRun } from '../helpers/train_run.js';

const TINY = tinyGpt({ 'batch-size': 2, dataset: 'toy:60', 'collective-timeout': 60 });

const root = mkdtempSync(join(tmpdir(), 'rosedist-faults-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** train_ddp with `worldSize` workers, logging to `dir`/train.log; exits are returned, not checked. */
const run = (dir: string, worldSize: number, args: string[], env: Record<string, string> = {}): Promise<TrainRun> =>
  trainDdpIn(dir, worldSize, [...TINY, ...args], { env, ok: false });

const meta = (path: string) => decodeSafetensors(readFileSync(path), path).metadata;

describe('non-finite gradients', () => {
  it("a NaN in rank 1's gradient at step 3 stops both ranks, naming the step and the rank; the step-2 checkpoint is kept", async () => {
    const dir = join(root, 'nan-stop');
    const ckpt = join(dir, 'ckpt.safetensors');
    const r = await run(dir, 2, ['--num-steps', '6', '--eval-interval', '1', '--checkpoint-interval', '2', '--checkpoint-path', ckpt], {
      ROSEDIST_TEST_INJECT_NAN: '3:1',
    });
    for (const e of r.exits) {
      assert.equal(e.code, 1, `rank ${e.rank}: ${e.stderr}`);
      assert.match(e.stderr, /non-finite loss or gradient at step 3: rank 1's gradient is NaN at index 0 \(lower --lr.*--on-nonfinite skip/);
    }
    assert.match(r.log, /ERROR.*at step 3: rank 1's gradient is NaN/);
    // Nothing garbage was recorded: steps 1 and 2 only, finite; the checkpoint is step 2's.
    assert.deepEqual(
      r.metrics.map((m) => m.step),
      [1, 2],
    );
    assert.ok(r.metrics.every((m) => Number.isFinite(m.train_loss) && Number.isFinite(m.val_loss)));
    assert.equal(meta(ckpt).step, '2');
  });

  it('--on-nonfinite skip: the run finishes, one warning names the skipped step, the optimizer took one step fewer', async () => {
    const dir = join(root, 'nan-skip');
    const ckpt = join(dir, 'ckpt.safetensors');
    const r = await run(
      dir,
      2,
      ['--num-steps', '4', '--eval-interval', '2', '--checkpoint-interval', '4', '--checkpoint-path', ckpt, '--on-nonfinite', 'skip'],
      { ROSEDIST_TEST_INJECT_NAN: '3:1' },
    );
    for (const e of r.exits) assert.equal(e.code, 0, `rank ${e.rank}: ${e.stderr}`);
    const warnings = r.log.split('\n').filter((l) => /skipped this optimizer step/.test(l));
    assert.equal(warnings.length, 1, r.log);
    assert.match(warnings[0] ?? '', /WARN.*at step 3: rank 1's gradient is NaN at index 0; skipped/);
    assert.deepEqual(
      r.metrics.map((m) => m.step),
      [2, 4],
    );
    assert.ok(
      r.metrics.every((m) => Number.isFinite(m.train_loss) && Number.isFinite(m.val_loss)),
      JSON.stringify(r.metrics),
    );
    const optimizer = JSON.parse(meta(ckpt).optimizer ?? '{}') as { stepCount: number };
    assert.deepEqual([meta(ckpt).step, optimizer.stepCount], ['4', 3]);
  });
});

describe('--on-nonfinite skip, bounded (issue 13, #7)', () => {
  it('--lr 1e10: every step after the first is skipped; the 5th skip in a row stops both ranks; skipped steps are logged as such; no checkpoint', async () => {
    const dir = join(root, 'skip-streak');
    const ckpt = join(dir, 'ckpt.safetensors');
    const r = await run(dir, 2, ['--lr', '1e10', '--num-steps', '6', '--eval-interval', '1', '--checkpoint-path', ckpt, '--on-nonfinite', 'skip']);
    for (const e of r.exits) {
      assert.equal(e.code, 1, `rank ${e.rank}: ${e.stderr}`);
      assert.match(
        e.stderr,
        /5 optimizer steps in a row were skipped \(steps 2-6\) on non-finite losses or gradients; the last: non-finite loss or gradient at step 6: .*\(the model is not training: lower --lr/,
      );
      assert.doesNotMatch(e.stderr, /    at /);
    }
    assert.equal(existsSync(ckpt), false, 'no checkpoint of a model that does not train');
    // Step 1 trained; steps 2-5 were skipped and say so, with the loss they had (not step 1's).
    assert.deepEqual(
      r.metrics.map((m) => [m.step, m.skipped ?? false]),
      [
        [1, false],
        [2, true],
        [3, true],
        [4, true],
        [5, true],
      ],
    );
    assert.ok(Number.isFinite(r.metrics[0]?.train_loss));
    for (const m of r.metrics.slice(1)) assert.notEqual(m.train_loss, r.metrics[0]?.train_loss, 'not the stale loss of step 1');
    assert.match(r.log, /step 2\/6 \| train loss \S+ \(step skipped\) \| val loss/);
  });

  it('--max-consecutive-skips 2 stops at the second skip in a row', async () => {
    const dir = join(root, 'skip-streak-2');
    const r = await run(dir, 2, [
      '--lr',
      '1e10',
      '--num-steps',
      '6',
      '--eval-interval',
      '6',
      '--checkpoint-path',
      join(dir, 'c.safetensors'),
      '--on-nonfinite',
      'skip',
      '--max-consecutive-skips',
      '2',
    ]);
    for (const e of r.exits) {
      assert.equal(e.code, 1, `rank ${e.rank}: ${e.stderr}`);
      assert.match(e.stderr, /2 optimizer steps in a row were skipped \(steps 2-3\)/);
    }
  });

  it('weights that overflowed (to infinity, or NaN as the wasm AdamW kernel computes lr 1e39 in float32) are never checkpointed', async () => {
    const dir = join(root, 'inf-weights');
    const ckpt = join(dir, 'ckpt.safetensors');
    const r = await run(dir, 2, ['--lr', '1e39', '--num-steps', '2', '--checkpoint-interval', '1', '--checkpoint-path', ckpt, '--on-nonfinite', 'skip']);
    for (const e of r.exits) {
      assert.equal(e.code, 1, `rank ${e.rank}: ${e.stderr}`);
      assert.match(e.stderr, /the weights at step 1 are not finite \((NaN|-?Infinity) at index \d+\): the checkpoint was not saved/);
    }
    assert.equal(existsSync(ckpt), false);
  });
});

describe('unwritable checkpoint path', () => {
  it('under a regular file: both ranks stop before training with the path and the fix named', async () => {
    const dir = join(root, 'ckpt-stop');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'blocker'), 'not a directory');
    const ckpt = join(dir, 'blocker', 'ckpt.safetensors');
    const r = await run(dir, 2, ['--num-steps', '4', '--eval-interval', '1', '--checkpoint-interval', '2', '--checkpoint-path', ckpt]);
    for (const e of r.exits) {
      // Issue 13 (#2, #14): checked at start (worker/output_paths.ts), not at the first save.
      assert.equal(e.code, 2, `rank ${e.rank}: ${e.stderr}`);
      assert.match(
        e.stderr,
        new RegExp(`--checkpoint-path ${ckpt}: ${dir}/blocker is a file, not a directory \\(pick a --checkpoint-path whose directories are directories`),
      );
      assert.doesNotMatch(e.stderr, /    at /, 'one line, no stack trace');
    }
    assert.deepEqual(
      r.metrics.map((m) => m.step),
      [],
      'stopped before training',
    );
  });

  it('--tolerate-checkpoint-errors: a warning per failed checkpoint, and training goes on to the end', async () => {
    const dir = join(root, 'ckpt-tolerate');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'blocker'), 'not a directory');
    const ckpt = join(dir, 'blocker', 'ckpt.safetensors');
    const r = await run(dir, 2, [
      '--num-steps',
      '4',
      '--eval-interval',
      '2',
      '--checkpoint-interval',
      '2',
      '--checkpoint-path',
      ckpt,
      '--tolerate-checkpoint-errors',
    ]);
    for (const e of r.exits) assert.equal(e.code, 0, `rank ${e.rank}: ${e.stderr}`);
    const warnings = r.log.split('\n').filter((l) => /WARN.*not saved/.test(l));
    assert.equal(warnings.length, 2, r.log);
    assert.match(warnings[0] ?? '', new RegExp(`checkpoint at step 2 not saved: cannot write checkpoint ${ckpt}: (ENOTDIR|EEXIST).*training goes on`));
    assert.match(warnings[1] ?? '', /checkpoint at step 4 not saved/);
    assert.deepEqual(
      r.metrics.map((m) => m.step),
      [2, 4],
    );
  });

  it('a write that fails next to a good checkpoint leaves that checkpoint byte for byte as it was', async () => {
    const dir = join(root, 'ckpt-keep');
    const first = join(dir, 'first.safetensors');
    const r1 = await run(dir, 1, ['--num-steps', '2', '--eval-interval', '2', '--checkpoint-path', first]);
    assert.equal(r1.exits[0]?.code, 0, r1.exits[0]?.stderr);
    // A name of 250 bytes: the file itself and its lock (<name>.lock) are fine, but the temporary
    // file beside it (<name>.tmp-<pid>) is longer than a file name may be, so the next write fails
    // (even as root).
    const kept = join(dir, `${'c'.repeat(238)}.safetensors`);
    copyFileSync(first, kept);
    const before = readFileSync(kept);
    const r2 = await run(dir, 1, ['--num-steps', '4', '--eval-interval', '2', '--checkpoint-interval', '2', '--checkpoint-path', kept, '--resume']);
    assert.equal(r2.exits[0]?.code, 1, r2.exits[0]?.stderr);
    assert.match(r2.log, /resumed from .* at step 2/);
    assert.match(r2.exits[0]?.stderr ?? '', /cannot write checkpoint .*c{238}\.safetensors: ENAMETOOLONG/);
    assert.deepEqual(readFileSync(kept), before);
    assert.equal(meta(kept).step, '2');
  });
});

describe('a config that cannot fit (issue 13, #5)', () => {
  it('--batch-size 512 at the defaults on wasm: both ranks refuse it at start in one line with the estimate, nothing trained', async () => {
    const dir = join(root, 'too-big');
    mkdirSync(dir, { recursive: true });
    const group = await spawnWorkers(
      'worker/train_ddp.ts',
      2,
      ['--batch-size', '512', '--backend', 'wasm', '--num-steps', '2', '--log-file', join(dir, 'train.log'), '--checkpoint-path', join(dir, 'c.safetensors')],
      { masterPort: await freePort() },
    );
    for (const e of await group.exited) {
      assert.equal(e.code, 2, `rank ${e.rank}: ${e.stderr}`);
      assert.match(
        e.stderr,
        /this config \(2,973,184 parameters, batch 512 x 32 tokens, vocab 10000\) needs about [\d.]+ GiB of tensors per training step, more than the wasm backend's 4 GiB heap \(lower --batch-size or --vocab-size/,
      );
      assert.doesNotMatch(e.stderr, /    at |RuntimeError/);
      assert.doesNotMatch(e.stdout, /step 1\//);
    }
    assert.equal(existsSync(join(dir, 'c.safetensors')), false);
  });
});
