/**
 * scripts/bench_gemm.ts end to end (bench:kernels): a short run prints one row per product of the
 * long config with finite positive GFLOP/s on both sides, and the AdamW table; bad flags get one
 * line and exit 2.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { packagePath } from '../../shared/runtime.js';
import { runTsProgram, type ProcessExit } from '../../shared/subprocess.js';

function bench(args: string[]): Promise<ProcessExit> {
  return runTsProgram(packagePath('scripts/bench_gemm.ts'), args);
}

describe('bench:kernels', () => {
  it('--configs long --rounds 1: every product of a training step, both sides measured, and AdamW', async () => {
    const r = await bench(['--configs', 'long', '--rounds', '1', '--min-ms', '1']);
    assert.equal(r.code, 0, r.stderr);
    const rows = r.stdout.split('\n').filter((l) => l.startsWith('| V 256, L 4, T 128 |'));
    const products = rows.filter((l) => l.split('|').length === 8);
    assert.equal(products.length, 21, r.stdout);
    for (const row of products) {
      const [theirs, ours, ratio] = row
        .split('|')
        .slice(4, 7)
        .map((c) => Number.parseFloat(c));
      for (const x of [theirs, ours, ratio]) assert.ok(Number.isFinite(x) && x! > 0, row);
    }
    assert.match(r.stdout, /\| V 256, L 4, T 128 \| 875,264 \| [\d.]+ \([\d.]+-[\d.]+\) \| [\d.]+ \([\d.]+-[\d.]+\) \| [\d.]+x \|/);
  });

  it('a bad flag is refused in one line, exit 2', async () => {
    const r = await bench(['--rounds', '0']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trim(), 'bench: --rounds must be a positive integer, got 0');
  });
});
