/** The tensor-parallel flags: --tensor-parallel-size, the original's --use-tensor-parallel, and what they must divide. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../../shared/errors.js';
import { parseTrainConfig, tensorParallelSizeOf } from '../../worker/config.js';

const parse = (...argv: string[]) => parseTrainConfig(argv, 'train_ddp');

describe('tensor-parallel flags', () => {
  it('default 1; --tensor-parallel-size K; --use-tensor-parallel means the world size', () => {
    assert.equal(tensorParallelSizeOf(parse(), 4), 1);
    assert.equal(tensorParallelSizeOf(parse('--tensor-parallel-size', '2'), 4), 2);
    assert.equal(tensorParallelSizeOf(parse('--use-tensor-parallel'), 4), 4);
    assert.equal(tensorParallelSizeOf(parse('--use-tensor-parallel', '--tensor-parallel-size', '4'), 4), 4);
  });

  it('K must divide --n-heads and --d-ff (at parse time) and the world size (at start), each one clear line', () => {
    assert.throws(
      () => parse('--tensor-parallel-size', '3'),
      (e: unknown) => e instanceof ConfigError && /--tensor-parallel-size 3 does not divide --n-heads 4/.test(e.message),
    );
    assert.throws(
      () => parse('--tensor-parallel-size', '4', '--d-ff', '510'),
      (e: unknown) => e instanceof ConfigError && /does not divide --d-ff 510/.test(e.message),
    );
    assert.throws(() => parse('--tensor-parallel-size', '0'), ConfigError);
    assert.throws(() => tensorParallelSizeOf(parse('--tensor-parallel-size', '4'), 6), /--tensor-parallel-size 4 does not divide the world size 6/);
    assert.throws(() => tensorParallelSizeOf(parse('--use-tensor-parallel'), 3), /tensor-parallel size 3 .* does not divide --n-heads 4/);
    assert.throws(
      () => tensorParallelSizeOf(parse('--use-tensor-parallel', '--tensor-parallel-size', '2'), 4),
      /--use-tensor-parallel means --tensor-parallel-size 4/,
    );
    assert.throws(
      () => tensorParallelSizeOf(parse('--tensor-parallel-size', '2', '--zero', '1'), 4),
      /--zero 1 is not combined with tensor parallelism \(tp 2\) yet/,
    );
    assert.equal(tensorParallelSizeOf(parse('--zero', '1'), 4), 1);
  });
});
