/**
 * --grad-compression (worker/comm/wire.ts, ring_compressed.ts) over real worker processes and the
 * ZeroMQ group on loopback (test/helpers/workers.ts, no launcher). Tiny model, cpu backend.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { type MetricsRecord } from '../../shared/metrics.js';
import { decodeSafetensors, type NamedTensor } from '../../worker/safetensors.js';
import { tinyGpt } from '../helpers/tiny_gpt.js';
import { trainDdpIn, type TrainRun } from '../helpers/train_run.js';

const TINY = tinyGpt({
  'batch-size': 2,
  dataset: 'toy:60',
  'collective-timeout': 60,
  lr: '3e-3',
  seed: 5,
  'num-steps': 10,
  'eval-interval': 5,
  'checkpoint-interval': 10,
});

const root = mkdtempSync(join(tmpdir(), 'rosedist-compress-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** train_ddp with `worldSize` workers in root/`name`. */
const trainDdp = (name: string, worldSize: number, args: string[], ok = true): Promise<TrainRun> =>
  trainDdpIn(join(root, name), worldSize, [...TINY, ...args], { ok });

const weights = (path: string): readonly NamedTensor[] => decodeSafetensors(readFileSync(path), path).tensors.filter((t) => !t.name.startsWith('optimizer.'));

function maxAbsDiff(a: readonly NamedTensor[], b: readonly NamedTensor[]): number {
  let max = 0;
  a.forEach((t, i) => t.data.forEach((v, j) => (max = Math.max(max, Math.abs(v - (b[i]?.data[j] ?? Number.NaN))))));
  return max;
}

const replicaLine = (log: string): string | undefined => /replicas identical after step 10: weights sha256 ([0-9a-f]{16})/.exec(log)?.[1];

describe('train_ddp --grad-compression (real processes)', () => {
  it('bf16 and fp16: every rank ends with the same weights, losses close to the float32 run; bf16 with --zero 1 gives the same bits as without', async (t) => {
    const plain = await trainDdp('plain', 3, []);
    const bf16 = await trainDdp('bf16', 3, ['--grad-compression', 'bf16']);
    const fp16 = await trainDdp('fp16', 3, ['--grad-compression', 'fp16']);
    const zero = await trainDdp('bf16-zero', 3, ['--grad-compression', 'bf16', '--zero', '1']);
    for (const run of [plain, bf16, fp16, zero]) assert.ok(replicaLine(run.log) !== undefined, `no "replicas identical" line in ${run.log}`);
    // ZeRO's reduce-scatter gives each shard the compressed all-reduce's bits, so the runs are one.
    assert.equal(replicaLine(zero.log), replicaLine(bf16.log));
    assert.notEqual(replicaLine(bf16.log), replicaLine(plain.log), 'compression changed nothing: was it applied?');
    const last = (r: TrainRun): MetricsRecord => r.metrics[r.metrics.length - 1] as MetricsRecord;
    for (const [name, run] of [
      ['bf16', bf16],
      ['fp16', fp16],
    ] as const) {
      const dLoss = Math.abs(last(run).val_loss - last(plain).val_loss) / last(plain).val_loss;
      const dWeights = maxAbsDiff(weights(run.checkpoint), weights(plain.checkpoint));
      t.diagnostic(
        `${name}: val loss ${last(run).val_loss.toFixed(5)} vs ${last(plain).val_loss.toFixed(5)} (${(100 * dLoss).toFixed(3)} %), max weight diff ${dWeights.toExponential(2)}`,
      );
      assert.ok(dLoss < 0.01, `${name}: val loss ${last(run).val_loss} vs ${last(plain).val_loss}`);
      assert.ok(dWeights < 0.01, `${name}: weights moved ${dWeights} from the float32 run`);
      run.metrics.forEach((m, i) =>
        assert.ok(Math.abs(m.train_loss - (plain.metrics[i]?.train_loss ?? Number.NaN)) < 0.02 * m.train_loss, `${name} step ${m.step}`),
      );
    }
  });

  it('a bad --grad-compression value stops every rank with one line naming the flag', async () => {
    const run = await trainDdp('bad', 2, ['--grad-compression', 'int8'], false);
    for (const e of run.exits) {
      assert.equal(e.code, 2, `rank ${e.rank}: ${e.stderr}`);
      assert.match(e.stderr, /--grad-compression int8 is not one of none, bf16, fp16/);
      assert.doesNotMatch(e.stderr, /\n\s+at /, 'no stack trace');
    }
  });
});
