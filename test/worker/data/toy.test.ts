import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../../../shared/errors.js';
import { collate } from '../../../worker/data/collate.js';
import type { SampleSet } from '../../../worker/data/dataset.js';
import { loadDataset } from '../../../worker/data/index.js';
import { toyDataset } from '../../../worker/data/toy.js';

const opts = { seqLen: 32, seed: 0, vocabSize: 10000, dataDir: 'data/cache', tokenizer: 'byte' };
const rows = (set: SampleSet): string[] => Array.from({ length: set.length }, (_, i) => set.get(i).inputIds.join(','));

describe('toy dataset', () => {
  it("is the original's: 1000 random samples, labels = inputs, mask all ones, 800/200", () => {
    const d = toyDataset(opts);
    assert.equal(d.train.length, 800);
    assert.equal(d.val.length, 200);
    assert.equal(d.minVocabSize, 10000);
    let sum = 0;
    for (const set of [d.train, d.val]) {
      for (let i = 0; i < set.length; i++) {
        const s = set.get(i);
        assert.equal(s.inputIds.length, 32);
        assert.deepEqual(s.labels, s.inputIds);
        assert.ok(s.attentionMask.every((m) => m === 1));
        assert.ok(s.inputIds.every((t) => t >= 0 && t < 10000));
        sum += s.inputIds.reduce((a, b) => a + b, 0);
      }
    }
    // Uniform over [0, 10000): mean 4999.5, standard error about 16 over 32,000 tokens.
    assert.ok(Math.abs(sum / 32000 - 4999.5) < 100, `mean token ${sum / 32000}`);
    // The split is a partition: 1000 distinct samples in all.
    assert.equal(new Set([...rows(d.train), ...rows(d.val)]).size, 1000);
  });

  it('is fixed by its seed', () => {
    assert.deepEqual(rows(toyDataset(opts).val), rows(toyDataset(opts).val));
    assert.notDeepEqual(rows(toyDataset({ ...opts, seed: 1 }).val), rows(toyDataset(opts).val));
  });

  it('loadDataset: toy:<samples>, and bad specs', async () => {
    const d = await loadDataset('toy:35', opts);
    assert.equal(d.train.length, 28);
    assert.equal(d.val.length, 7);
    await assert.rejects(loadDataset('toy:3', opts), ConfigError);
    await assert.rejects(loadDataset('mnist', opts), ConfigError);
  });
});

describe('collate', () => {
  it('stacks samples row-major into [B, T]', () => {
    const d = toyDataset({ ...opts, seqLen: 4 });
    const b = collate(d.train, [5, 2]);
    assert.equal(b.batchSize, 2);
    assert.equal(b.seqLen, 4);
    assert.deepEqual([...b.inputIds], [...d.train.get(5).inputIds, ...d.train.get(2).inputIds]);
    assert.deepEqual([...b.labels], [...b.inputIds]);
    assert.deepEqual([...b.attentionMask], [1, 1, 1, 1, 1, 1, 1, 1]);
  });
});
