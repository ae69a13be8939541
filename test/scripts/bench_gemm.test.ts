/**
 * scripts/bench_gemm.ts end to end (bench:kernels): a short run prints one row per product of the
 * long config with finite positive GFLOP/s on every side, the cross-entropy's row and the AdamW
 * table; bad flags get one line and exit 2.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { packagePath } from '../../shared/runtime.js';
import { runTsProgram, type ProcessExit } from '../../shared/subprocess.js';

function bench(args: string[]): Promise<ProcessExit> {
  return runTsProgram(packagePath('scripts/bench_gemm.ts'), args);
}

describe('bench:kernels', () => {
  it('--configs long --rounds 1: every product of a training step, every side measured, the cross-entropy and AdamW', async () => {
    const r = await bench(['--configs', 'long', '--rounds', '1', '--min-ms', '1']);
    assert.equal(r.code, 0, r.stderr);
    const rows = r.stdout.split('\n').filter((l) => l.startsWith('| V 256, L 4, T 128 |'));
    // config | product | shape | tfjs | ours, plain SIMD | ours | ours/tfjs | ours/plain | ours/ceiling
    const products = rows.filter((l) => l.split('|').length === 11);
    assert.equal(products.length, 21, r.stdout);
    for (const row of products) {
      const figures = row
        .split('|')
        .slice(4, 9)
        .map((c) => Number.parseFloat(c));
      for (const x of figures) assert.ok(Number.isFinite(x) && x > 0, row);
      assert.match(row.split('|')[9] ?? '', /^ \d+% $/, row);
    }
    // The core's SIMD ceiling, measured before and after the products (scripts/wasm_peak.ts).
    assert.match(
      r.stdout,
      /ceiling of 128-bit wasm SIMD on this core .*: fused multiply-add [\d.]+ GFLOP\/s before, [\d.]+ GFLOP\/s after the products; multiply \+ add .* [\d.]+ GFLOP\/s/,
    );
    // The cross-entropy at the config's logits (batch 8 x 127 rows, V 256): tfjs ops, ours, ratio.
    assert.match(r.stdout, /\| V 256, L 4, T 128 \| 1016 x 256 \| [\d.]+ \([\d.]+-[\d.]+\) \| [\d.]+ \([\d.]+-[\d.]+\) \| [\d.]+x \|/);
    assert.match(r.stdout, /\| V 256, L 4, T 128 \| 875,264 \| [\d.]+ \([\d.]+-[\d.]+\) \| [\d.]+ \([\d.]+-[\d.]+\) \| [\d.]+x \|/);
  });

  it('a bad flag is refused in one line, exit 2', async () => {
    const r = await bench(['--rounds', '0']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trim(), 'bench: --rounds must be a positive integer, got 0');
  });
});
