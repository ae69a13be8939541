/**
 * --sparse-embedding-grad (worker/ddp_sparse.ts: the token embedding's gradient as the rows the
 * step's tokens touched, all-gathered; the rest of the step buffer all-reduced) over real worker
 * processes and the ZeroMQ group on loopback, against the default (the dense all-reduce of the
 * whole step buffer). A vocabulary of 512 against 2 × 8 tokens per rank and
 * step, so that the sparse rows pay and are chosen.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { decodeSafetensors, type NamedTensor } from '../../worker/safetensors.js';
import { tinyGpt } from '../helpers/tiny_gpt.js';
import { trainDdpIn, type TrainRun } from '../helpers/train_run.js';

const TINY = tinyGpt({ 'vocab-size': 512, 'd-model': 32, 'd-ff': 64, 'batch-size': 2, dataset: 'toy:60', 'collective-timeout': 60, lr: '3e-3', seed: 3 });
const TEN = ['--num-steps', '10', '--eval-interval', '5', '--checkpoint-interval', '10'];

const root = mkdtempSync(join(tmpdir(), 'rosedist-sparse-'));
after(() => rmSync(root, { recursive: true, force: true }));

const train = (name: string, worldSize: number, args: string[]): Promise<TrainRun> => trainDdpIn(join(root, name), worldSize, [...TINY, ...TEN, ...args]);
const SPARSE = '--sparse-embedding-grad';
const tensors = (r: TrainRun): readonly NamedTensor[] => decodeSafetensors(readFileSync(r.checkpoint), r.checkpoint).tensors;
const sparseChosen = (r: TrainRun): boolean => /token embedding gradient as sparse rows: each rank's at most 17 of 512 rows, in slots/.test(r.log);

/** Largest |a - b| and largest |a| over every tensor of two checkpoints (weights, AdamW's m and v). */
function compare(a: TrainRun, b: TrainRun): { maxDiff: number; maxAbs: number } {
  const [x, y] = [tensors(a), tensors(b)];
  assert.deepEqual(
    x.map((t) => t.name),
    y.map((t) => t.name),
  );
  let maxDiff = 0;
  let maxAbs = 0;
  x.forEach((t, i) =>
    t.data.forEach((v, j) => {
      maxDiff = Math.max(maxDiff, Math.abs(v - (y[i] as NamedTensor).data[j]));
      maxAbs = Math.max(maxAbs, Math.abs(v));
    }),
  );
  return { maxDiff, maxAbs };
}

describe('train_ddp --sparse-embedding-grad (real processes)', () => {
  it('2 workers, float32: the same bits as the dense all-reduce after 10 steps (weights, m, v, losses)', async () => {
    const sparse = await train('sparse-2', 2, [SPARSE]);
    const dense = await train('dense-2', 2, []); // the default
    assert.ok(sparseChosen(sparse), sparse.log);
    assert.ok(!sparseChosen(dense), dense.log);
    assert.equal(compare(sparse, dense).maxDiff, 0);
    assert.deepEqual(
      sparse.metrics.map((m) => [m.step, m.train_loss, m.val_loss]),
      dense.metrics.map((m) => [m.step, m.train_loss, m.val_loss]),
    );
  });

  it('3 workers, and 2 with --grad-compression bf16: the dense result within rounding, every replica the same bits', async (t) => {
    // Weights within float32 rounding of another summation order with 3 ranks; with bf16 the rows
    // cross at float32 while the dense run rounds them to 16 bits, and AdamW's normalised steps
    // turn such differences in tiny gradients into steps of up to lr: there the loss is compared.
    for (const [name, worldSize, extra, weightTol, lossTol] of [
      ['3', 3, [], 1e-4, 1e-5],
      ['bf16', 2, ['--grad-compression', 'bf16'], Infinity, 1e-3],
    ] as const) {
      const sparse = await train(`sparse-${name}`, worldSize, [...extra, SPARSE]);
      const dense = await train(`dense-${name}`, worldSize, [...extra]);
      assert.ok(sparseChosen(sparse), sparse.log);
      // Every run ends by comparing the replicas' SHA-256 (ddp.ts checkReplicas) and fails if they differ.
      assert.match(sparse.log, /replicas identical after step 10/);
      const { maxDiff, maxAbs } = compare(sparse, dense);
      assert.ok(maxDiff <= weightTol * Math.max(1, maxAbs), `${name}: max |sparse - dense| ${maxDiff} (max |w| ${maxAbs})`);
      const last = (r: TrainRun): number => r.metrics.at(-1)?.val_loss ?? Number.NaN;
      assert.ok(Math.abs(last(sparse) - last(dense)) <= lossTol * last(dense), `${name}: val loss ${last(sparse)} against ${last(dense)}`);
      t.diagnostic(`${name}: max |sparse - dense| ${maxDiff.toExponential(2)}, val loss ${last(sparse)} against ${last(dense)}`);
    }
  });

  it('where the rows would not pay (vocabulary 64 against 16 tokens per rank), the step buffer is all-reduced densely', async () => {
    const run = await trainDdpIn(join(root, 'small-vocab'), 2, [...tinyGpt({ 'batch-size': 2, dataset: 'toy:60', 'collective-timeout': 60 }), ...TEN, SPARSE]);
    assert.doesNotMatch(run.log, /as sparse rows/);
  });
});
