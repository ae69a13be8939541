/**
 * train_ddp over real worker processes and the ZeroMQ process group on loopback, started with the
 * environment contract by test/helpers/workers.ts (no launcher). Tiny model, cpu backend.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, it } from 'node:test';
import { parseMetrics, type MetricsRecord } from '../../shared/metrics.js';
import { decodeSafetensors, type NamedTensor } from '../../worker/safetensors.js';
import { parseEvalLine } from '../../worker/observe/metrics_log.js';
import { PHASES, type MergedTrace, type TraceEvent } from '../../worker/observe/profiler.js';
import { freePort, spawnWorkers, type WorkerExit } from '../helpers/workers.js';
import { tinyGpt } from '../helpers/tiny_gpt.js';

const TINY = tinyGpt({ 'collective-timeout': 60 });

const root = mkdtempSync(join(tmpdir(), 'rosedist-ddp-'));
after(() => rmSync(root, { recursive: true, force: true }));

interface Run {
  readonly dir: string;
  readonly exits: WorkerExit[];
  readonly metrics: MetricsRecord[];
  readonly log: string;
  readonly checkpoint: string;
}

/** Run train_ddp with `worldSize` workers in `dir` (created under the test's temp root). */
async function trainDdp(name: string, worldSize: number, args: string[]): Promise<Run> {
  const dir = join(root, name);
  const checkpoint = join(dir, 'ckpt.safetensors');
  const group = await spawnWorkers(
    'worker/train_ddp.ts',
    worldSize,
    [...TINY, '--log-file', join(dir, 'train.log'), '--checkpoint-path', checkpoint, ...args],
    {
      masterPort: await freePort(),
    },
  );
  const exits = await group.exited;
  for (const e of exits) assert.equal(e.code, 0, `rank ${e.rank} of ${name} exited ${e.code} ${e.signal}: ${e.stderr}`);
  return {
    dir,
    exits,
    metrics: parseMetrics(readFileSync(join(dir, 'train.metrics.jsonl'), 'utf8')),
    log: readFileSync(join(dir, 'train.log'), 'utf8'),
    checkpoint,
  };
}

const tensors = (path: string): readonly NamedTensor[] => decodeSafetensors(readFileSync(path), path).tensors;
const params = (path: string) => tensors(path).filter((t) => !t.name.startsWith('optimizer.'));

function maxAbsDiff(a: readonly NamedTensor[], b: readonly NamedTensor[]): number {
  assert.deepEqual(
    a.map((t) => t.name),
    b.map((t) => t.name),
  );
  let max = 0;
  a.forEach((t, i) => t.data.forEach((v, j) => (max = Math.max(max, Math.abs(v - b[i].data[j])))));
  return max;
}

describe('train_ddp (real processes)', () => {
  it('2 workers at batch b end with the parameters of 1 worker at batch 2b (dropout 0, 5 steps)', async (t) => {
    const common = ['--dataset', 'toy:60', '--dropout', '0', '--seed', '3', '--num-steps', '5', '--eval-interval', '5', '--lr', '3e-3'];
    const two = await trainDdp('equiv-2', 2, [...common, '--batch-size', '2']);
    const one = await trainDdp('equiv-1', 1, [...common, '--batch-size', '4']);
    const diff = maxAbsDiff(params(two.checkpoint), params(one.checkpoint));
    t.diagnostic(`max abs parameter difference, 2 workers vs 1: ${diff}`);
    assert.ok(diff < 1e-5, `max abs parameter difference ${diff}`);
    // The runs moved the weights well beyond that difference.
    const init = await trainDdp('equiv-0', 1, [...common, '--batch-size', '4', '--num-steps', '1', '--lr', '1e-12']);
    assert.ok(maxAbsDiff(params(one.checkpoint), params(init.checkpoint)) > 1e-3);
    // The logged train loss is the mean over ranks, so it matches the single worker's.
    assert.ok(Math.abs(two.metrics[0].train_loss - one.metrics[0].train_loss) < 1e-5);
    assert.equal(two.metrics[0].tokens_seen, one.metrics[0].tokens_seen);
    // Rank 0 alone wrote the log: one header, both ranks' backends in it, one eval line.
    assert.equal(two.log.split('\n').filter((l) => /train_ddp started .*: world size 2/.test(l)).length, 1);
    assert.match(two.log, /rank 0: backend cpu/);
    assert.match(two.log, /rank 1: backend cpu/);
    assert.deepEqual(
      two.log
        .split('\n')
        .map(parseEvalLine)
        .filter((l) => l !== undefined)
        .map((l) => l.step),
      [5],
    );
    assert.deepEqual(
      two.metrics.map((m) => [m.step, m.world_size]),
      [[5, 2]],
    );
    assert.doesNotMatch(two.exits[1].stdout, /step 5\/5/);
  });

  it('evaluates exactly: 1, 2 and 3 workers give the same val loss and token count on 7 val samples', async () => {
    const common = ['--dataset', 'toy:35', '--batch-size', '2', '--num-steps', '2', '--eval-interval', '2'];
    const trained = await trainDdp('eval-1', 1, common);
    const results = [trained.metrics.at(-1)];
    for (const w of [2, 3]) {
      // The same checkpoint, evaluated by another world size (nothing left to train).
      const run = await trainDdp(`eval-${w}`, w, [...common, '--resume', '--checkpoint-path', trained.checkpoint]);
      assert.match(run.log, /nothing left to train/);
      assert.match(run.log, new RegExp(`written by world size 1, this run has world size ${w}`));
      results.push(run.metrics.at(-1));
    }
    const [one, ...others] = results.map((r) => {
      assert.ok(r);
      return r;
    });
    assert.equal(one.val_tokens, 7 * 7);
    for (const r of others) {
      assert.equal(r.val_tokens, one.val_tokens);
      assert.ok(Math.abs(r.val_loss - one.val_loss) < 1e-6, `${r.world_size} workers: ${r.val_loss} vs ${one.val_loss}`);
    }
  });

  it('a run killed after a checkpoint and resumed reaches the metrics and weights of an uninterrupted run', async (t) => {
    const common = ['--dataset', 'toy:60', '--batch-size', '2', '--checkpoint-interval', '3', '--eval-interval', '3'];
    const dir = join(root, 'killed');
    const checkpoint = join(dir, 'ckpt.safetensors');
    const group = await spawnWorkers(
      'worker/train_ddp.ts',
      2,
      [...TINY, ...common, '--num-steps', '100000', '--log-file', join(dir, 'train.log'), '--checkpoint-path', checkpoint],
      {
        masterPort: await freePort(),
      },
    );
    while (!existsSync(checkpoint)) {
      if (group.children.some((c) => c.exitCode !== null)) break;
      await sleep(20);
    }
    group.kill();
    const exits = await group.exited;
    assert.ok(
      exits.every((e) => e.signal === 'SIGKILL'),
      JSON.stringify(exits.map((e) => [e.code, e.signal, e.stderr])),
    );
    const stepAtKill = Number(decodeSafetensors(readFileSync(checkpoint), checkpoint).metadata.step);
    assert.ok(stepAtKill >= 3 && stepAtKill % 3 === 0, `checkpoint at step ${stepAtKill}`);
    t.diagnostic(`killed with the checkpoint at step ${stepAtKill}`);
    const target = String(stepAtKill + 3);

    const resumed = await trainDdp('killed', 2, [...common, '--resume', '--num-steps', target]);
    assert.match(resumed.log, new RegExp(`resumed from .* at step ${stepAtKill}`));
    const straight = await trainDdp('straight', 2, [...common, '--num-steps', target]);
    const last = (r: Run) => {
      const m = r.metrics.at(-1);
      assert.ok(m);
      return m;
    };
    assert.equal(last(resumed).step, Number(target));
    assert.equal(last(resumed).train_loss, last(straight).train_loss);
    assert.equal(last(resumed).val_loss, last(straight).val_loss);
    assert.equal(last(resumed).tokens_seen, last(straight).tokens_seen);
    assert.equal(maxAbsDiff(tensors(resumed.checkpoint), tensors(straight.checkpoint)), 0);
  });

  it('--profile: rank 0 writes one Chrome trace in which each rank has each phase; metrics follow the schema', async () => {
    const trace = join(root, 'profiled', 'out', 'trace.json');
    const run = await trainDdp('profiled', 2, [
      '--dataset',
      'toy:60',
      '--batch-size',
      '2',
      '--num-steps',
      '4',
      '--eval-interval',
      '2',
      '--checkpoint-interval',
      '3',
      '--profile',
      trace,
    ]);
    const parsed = JSON.parse(readFileSync(trace, 'utf8')) as MergedTrace;
    assert.equal(parsed.displayTimeUnit, 'ms');
    const isPhase = (name: string) => (PHASES as readonly string[]).includes(name);
    // The Chrome trace event schema, as the viewers read it.
    for (const e of parsed.traceEvents as TraceEvent[]) {
      assert.ok(e.ph === 'X' || e.ph === 'M', JSON.stringify(e));
      assert.ok(typeof e.name === 'string' && (e.pid === 0 || e.pid === 1) && e.tid === 0, JSON.stringify(e));
      assert.ok(Number.isFinite(e.ts) && e.ts >= 0, JSON.stringify(e));
      if (e.ph === 'X') {
        assert.ok(isPhase(e.name), e.name);
        assert.ok(typeof e.dur === 'number' && e.dur >= 0 && Number.isInteger(e.args?.step), JSON.stringify(e));
      } else {
        assert.ok(['process_name', 'process_sort_index', 'thread_name'].includes(e.name), e.name);
      }
    }
    for (const rank of [0, 1]) {
      const mine = parsed.traceEvents.filter((e) => e.pid === rank);
      assert.deepEqual(
        mine.filter((e) => e.name === 'process_name').map((e) => e.args?.name),
        [`rank ${rank}`],
      );
      const phases = mine.filter((e) => e.ph === 'X');
      assert.deepEqual([...new Set(phases.map((e) => e.name))].sort(), [...PHASES].sort(), `every phase on rank ${rank}`);
      const count = (name: string) => phases.filter((e) => e.name === name).length;
      assert.deepEqual([count('allreduce'), count('optimizer'), count('eval'), count('checkpoint')], [4, 4, 2, 2], `rank ${rank}`);
    }
    assert.match(run.log, /profile: \d+ step-phase events of 2 rank\(s\) written to .*trace\.json/);
    assert.deepEqual(
      run.metrics.map((m) => m.step),
      [2, 4],
    );
    for (const m of run.metrics) {
      assert.equal(m.val_ppl, Math.exp(m.val_loss));
      assert.equal(m.world_size, 2);
    }
  });

  it('a bad flag stops every rank with exit code 2, each saying so with its rank', async () => {
    const group = await spawnWorkers('worker/train_ddp.ts', 2, ['--n-heads', '3'], { masterPort: await freePort(), env: { ROSEDIST_PREFIXED: '0' } });
    const exits = await group.exited;
    for (const e of exits) {
      assert.equal(e.code, 2);
      assert.match(e.stderr, new RegExp(`\\[rank ${e.rank}\\] ERROR: train_ddp: --d-model 128 is not divisible by --n-heads 3`));
    }
  });
});
