/**
 * scripts/bench_train.ts end to end (the real launcher, one tiny train_ddp worker, PyTorch off) and
 * the trace arithmetic it rests on (scripts/train_trace.ts) on a hand-made two-rank trace.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { packagePath } from '../../shared/runtime.js';
import { runTsProgram, type ProcessExit } from '../../shared/subprocess.js';
import type { MergedTrace, TraceEvent } from '../../worker/observe/profiler.js';
import { summariseTrace } from '../../scripts/train_trace.js';
import { tinyGpt } from '../helpers/tiny_gpt.js';

const TINY = tinyGpt({ 'batch-size': 2, dataset: 'toy:64' });

const dir = mkdtempSync(join(tmpdir(), 'rosedist-bench-train-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function bench(args: string[]): Promise<ProcessExit> {
  return runTsProgram(packagePath('scripts/bench_train.ts'), args);
}

describe('bench:train', () => {
  it('--no-torch --nproc 1 --steps 3: one row of ours, positive finite figures, world size 1', async () => {
    const json = join(dir, 'bench.json');
    const r = await bench(['--no-torch', '--nproc', '1', '--steps', '3', '--json', json, ...TINY]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /PyTorch: skipped \(--no-torch\)/);
    assert.match(r.stdout, /\| rosedist \| 1 \|/);
    const out = JSON.parse(readFileSync(json, 'utf8'));
    assert.equal(out.world_size, 1);
    assert.equal(out.rows.length, 1);
    const [row] = out.rows;
    assert.equal(row.impl, 'rosedist');
    assert.equal(row.world_size, 1);
    for (const x of [out.tokens_per_s, out.peak_rss_mb, row.tokens_per_s_per_worker, row.phase_ms.forward_backward]) {
      assert.ok(Number.isFinite(x) && x > 0, String(x));
    }
    assert.equal(row.tokens_per_s, out.tokens_per_s);
    assert.ok(row.allreduce_share >= 0 && row.allreduce_share < 1, String(row.allreduce_share));
    assert.equal(row.config.backend, 'cpu');
    assert.equal(row.config.d_model, 16);
  });

  it('--compare-overlap, 2 workers: rows with and without overlap, the overlap from the trace and A/B', async () => {
    const json = join(dir, 'overlap.json');
    const r = await bench(['--no-torch', '--nproc', '2', '--steps', '4', '--compare-overlap', '--bucket-mb', String(4 / 1024), '--json', json, ...TINY]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(readFileSync(json, 'utf8'));
    assert.deepEqual(out.rows.map((x: { impl: string }) => x.impl).sort(), ['rosedist', 'rosedist --no-overlap']);
    const on = out.rows.find((x: { impl: string }) => x.impl === 'rosedist');
    assert.ok(on.overlap.buckets >= 2 && on.overlap.inFlightMs > 0 && on.overlap.hidden >= 0 && on.overlap.hidden <= 1, JSON.stringify(on.overlap));
    assert.equal(out.rows.find((x: { impl: string }) => x.impl !== 'rosedist').overlap, undefined);
    const [ab] = out.overlap_ab;
    assert.equal(ab.world_size, 2);
    assert.ok(Number.isFinite(ab.hidden) && ab.hidden <= 1 && ab.tokens_per_s > 0, JSON.stringify(ab));
    assert.match(
      r.stdout,
      /overlap A\/B, world 2: tokens\/s ×[\d.]+; all-reduce on the step's critical path [\d.]+ → [\d.]+ ms per step: overlap achieved -?\d+%/,
    );
    const both = await bench(['--no-torch', '--compare-overlap', '--no-overlap', ...TINY]);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--no-overlap is set by --compare-overlap/);
  });

  it('an option the bench sets itself is refused in one line, exit 2', async () => {
    const r = await bench(['--no-torch', '--num-steps', '5', ...TINY]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trim(), 'bench:train: --num-steps is set by the benchmark (leave it out (use --steps for the step count))');
  });

  it('--netns and --nnodes that do not fit together are refused in one line each, exit 2, before anything runs', async () => {
    for (const [args, line] of [
      [['--nnodes', '2'], /^bench:train: --nnodes needs --netns/],
      [['--netns', 'n1'], /^bench:train: --netns n1 must name 2 or more namespace hosts \(e\.g\. --netns n1,n2\)$/],
      [['--netns', 'n1,n2', '--nproc', '1,2'], /^bench:train: with --netns, --nproc takes one value \(workers per host\)/],
      [['--netns', 'n1,n2', '--nnodes', '1,3'], /^bench:train: --nnodes 3 is more than the 2 hosts of --netns/],
    ] as const) {
      const r = await bench(['--no-torch', ...args, ...TINY]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr.trim(), line);
    }
  });
});

describe('summariseTrace', () => {
  // rank, step, phase, start µs, duration µs
  const x = (pid: number, step: number, name: string, ts: number, dur: number): TraceEvent => ({ name, ph: 'X', ts, dur, pid, tid: 0, args: { step } });
  const trace: MergedTrace = {
    displayTimeUnit: 'ms',
    otherData: { peak_rss_mb: [100, 120] },
    traceEvents: [
      // Step 1 is the warm-up: slow, skipped.
      x(0, 1, 'forward_backward', 0, 900_000),
      x(1, 1, 'forward_backward', 0, 900_000),
      // Step 2: rank 0 computes 600 ms, waits 400 ms in the all-reduce; rank 1 computes 900 ms, 100 ms all-reduce.
      x(0, 2, 'data', 1_000_000, 0),
      x(0, 2, 'forward_backward', 1_000_000, 600_000),
      x(0, 2, 'allreduce', 1_600_000, 400_000),
      x(0, 2, 'optimizer', 2_000_000, 100_000),
      x(1, 2, 'forward_backward', 1_000_000, 900_000),
      x(1, 2, 'allreduce', 1_900_000, 100_000),
      x(1, 2, 'optimizer', 2_000_000, 100_000),
      // Not part of a step.
      x(0, 2, 'eval', 2_100_000, 5_000_000),
      x(1, 2, 'checkpoint', 2_100_000, 5_000_000),
    ],
  };

  it('skips the warm-up and eval/checkpoint; time of the slowest rank; mean all-reduce share; per-phase ms', () => {
    const s = summariseTrace(trace, 1);
    assert.equal(s.worldSize, 2);
    assert.equal(s.timedSteps, 1);
    assert.equal(s.trainSeconds, 1.1); // both ranks' step 2 spans 1.0 s → 2.1 s
    assert.ok(Math.abs(s.allreduceShare - (0.4 / 1.1 + 0.1 / 1.1) / 2) < 1e-12, String(s.allreduceShare));
    assert.deepEqual(s.phaseMs, { data: 0, forward_backward: 750, grad_copy: 0, allreduce: 250, optimizer: 100 });
    assert.deepEqual(s.peakRssMb, [100, 120]);
    // Rank 1 arrived last: its 100 ms are the collective; rank 0 waited 300 ms more (mean 150).
    assert.deepEqual(s.allreduceSplitMs, { collective: 100, wait: 150 });
  });

  it('overlap: bucket flights (tid 1) unioned per rank and step, the part before backward ended; none without buckets', () => {
    assert.equal(summariseTrace(trace, 1).overlap, undefined);
    const b = (pid: number, step: number, bucket: number, ts: number, dur: number): TraceEvent => ({
      name: 'allreduce_bucket',
      ph: 'X',
      ts,
      dur,
      pid,
      tid: 1,
      args: { step, bucket, bytes: 4 },
    });
    const withBuckets: MergedTrace = {
      ...trace,
      traceEvents: [
        ...trace.traceEvents,
        // Rank 0 (backward ends at 1.6 s): [1.2, 1.5] and [1.4, 1.8] → in flight 0.6 s, 0.4 s hidden.
        b(0, 2, 0, 1_200_000, 300_000),
        b(0, 2, 1, 1_400_000, 400_000),
        // Rank 1 (backward ends at 1.9 s): [1.95, 2.0] after it → 0.05 s in flight, nothing hidden.
        b(1, 2, 0, 1_950_000, 50_000),
        // A warm-up step's bucket: left out.
        b(0, 1, 0, 0, 900_000),
      ],
    };
    const o = summariseTrace(withBuckets, 1).overlap;
    assert.ok(o !== undefined);
    assert.equal(o.buckets, 2);
    assert.ok(Math.abs(o.inFlightMs - (600 + 50) / 2) < 1e-9, String(o.inFlightMs));
    assert.ok(Math.abs(o.hiddenMs - 400 / 2) < 1e-9, String(o.hiddenMs));
    assert.ok(Math.abs(o.hidden - 400 / 650) < 1e-12, String(o.hidden));
  });

  it('no step after the warm-up: says to pass more --steps', () => {
    assert.throws(() => summariseTrace(trace, 2), /no training step after the 2 warm-up step\(s\): pass more --steps/);
  });
});
