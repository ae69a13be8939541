/**
 * The memory estimate and the refusal of configs that cannot fit (worker/memory.ts; issue 13, #5).
 * How close the estimate comes to real runs is measured by scripts/bench_memory.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../../shared/errors.js';
import { parseTrainConfig } from '../../worker/config.js';
import { checkMemory, estimateMemory, WASM_HEAP_LIMIT_BYTES } from '../../worker/memory.js';
import { countParams } from '../../worker/model/params.js';

const T = ['--vocab-size', '256', '--d-model', '32', '--n-heads', '2', '--d-ff', '64', '--n-layers', '1'];
const GiB = 2 ** 30;
const cfg = (argv: string[]) => parseTrainConfig(argv, 'train_ddp');

function refusal(argv: string[], backend: 'wasm' | 'cpu', workers = 1, machine = 64 * GiB): string {
  try {
    checkMemory(cfg(argv), backend, workers, machine);
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    assert.ok(!`${e.message}${e.hint}`.includes('\n'));
    return `${e.message} | ${e.hint ?? ''}`;
  }
  assert.fail(`${argv.join(' ')} was accepted`);
}

describe('estimateMemory', () => {
  it("counts the model's parameters and grows with every size", () => {
    const base = estimateMemory(cfg(T));
    assert.equal(base.numParams, countParams({ ...cfg(T), dropout: 0 }));
    assert.equal(base.totalBytes > base.tensorBytes + base.arrayBytes, true, "plus the process's base");
    for (const [flag, value] of [
      ['--batch-size', '16'],
      ['--seq-len', '64'],
      ['--vocab-size', '512'],
      ['--d-model', '64'],
      ['--d-ff', '128'],
      ['--n-layers', '2'],
      ['--n-heads', '4'],
    ]) {
      const grown = estimateMemory(cfg([...T, flag as string, value as string]));
      assert.ok(grown.tensorBytes > base.tensorBytes, `${flag} ${value}`);
    }
  });

  it('the logits term is B*(T-1)*V floats several times over: --batch-size 512 at the defaults passes 4 GiB', () => {
    const e = estimateMemory(cfg(['--batch-size', '512']));
    assert.ok(e.tensorBytes > 512 * 31 * 10000 * 4 * 4);
    assert.ok(e.tensorBytes > WASM_HEAP_LIMIT_BYTES);
  });
});

describe('checkMemory', () => {
  it('accepts the defaults and T on every backend', () => {
    for (const backend of ['wasm', 'cpu'] as const) {
      checkMemory(cfg([]), backend, 2, 8 * GiB);
      checkMemory(cfg(T), backend, 2, 8 * GiB);
    }
  });

  it('refuses what the wasm heap cannot hold, in one line with the estimate and what to lower', () => {
    assert.match(
      refusal(['--batch-size', '512'], 'wasm'),
      /^this config \(2,973,184 parameters, batch 512 x 32 tokens, vocab 10000\) needs about [\d.]+ GiB of tensors per training step, more than the wasm backend's 4 GiB heap \| lower --batch-size or --vocab-size; --grad-accum-steps keeps the tokens per step$/,
    );
    assert.match(
      refusal([...T, '--batch-size', '10000'], 'wasm'),
      /batch 10000 x 32 tokens.*more than the wasm backend's 4 GiB heap \| lower --batch-size, --d-model or --d-ff/,
    );
    assert.match(
      refusal(['--max-position-embeddings', '4096', '--seq-len', '4096', '--vocab-size', '256'], 'wasm'),
      /4 GiB heap \| lower --batch-size or --seq-len/,
    );
    assert.match(
      refusal(['--d-model', '4096', '--d-ff', '16384', '--n-layers', '8'], 'wasm'),
      /4 GiB heap \| lower --vocab-size, --d-model, --d-ff or --n-layers$/,
    );
  });

  it('refuses what the machine cannot hold for all its workers', () => {
    // cpu: no heap limit, the machine's memory is the bound.
    assert.match(refusal(['--batch-size', '512'], 'cpu', 1, 4 * GiB), /needs about [\d.]+ GiB of memory, more than this machine's 4.00 GiB/);
    const perWorker = estimateMemory(cfg([])).totalBytes;
    checkMemory(cfg([]), 'wasm', 4, 4 * perWorker);
    assert.match(
      refusal([], 'wasm', 4, 3 * perWorker),
      /\(\d+ MiB per worker x 4 workers\), more than this machine's .* \| .*, or run fewer workers per node$/,
    );
  });

  it('refuses a parameter count past the longest typed array', () => {
    assert.match(refusal(['--d-model', '65536'], 'cpu', 1, 2 ** 50), /35,814,376,448 parameters.*more parameters than one array can hold/);
  });
});
