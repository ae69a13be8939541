/**
 * scripts/bench_contention.ts end to end (bench:contention): a short run prints ours' row with
 * finite positive figures (alone, at once, their ratio, CPU ms per step); bad flags get one line
 * and exit 2.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { packagePath } from '../../shared/runtime.js';
import { runTsProgram, type ProcessExit } from '../../shared/subprocess.js';

function bench(args: string[]): Promise<ProcessExit> {
  return runTsProgram(packagePath('scripts/bench_contention.ts'), args);
}

describe('bench:contention', () => {
  it('--no-torch, one round of a small model: ours alone and 2 at once, the ratio and CPU ms per step', async () => {
    const r = await bench(['--no-torch', '--repeat', '1', '--steps', '4', '--warmup', '1', '--vocab-size', '256', '--seq-len', '16']);
    assert.equal(r.code, 0, r.stderr);
    const row = r.stdout.split('\n').find((l) => l.startsWith('| ours |'));
    assert.ok(row !== undefined, r.stdout);
    // | ours | alone (range) | at once (range) | ratio (range) | cpu → cpu |
    const figures = [...row.matchAll(/[\d.]+/g)].map((m) => Number(m[0]));
    assert.equal(figures.length, 11, row);
    for (const x of figures) assert.ok(Number.isFinite(x) && x > 0, row);
    assert.doesNotMatch(r.stdout, /\| PyTorch \|/);
    assert.match(r.stdout, /vocab 256, 2 layers, seq 16, batch 8; 1 rounds/);
  });

  it('bad flags are refused in one line each, exit 2', async () => {
    for (const [args, line] of [
      [['--copies', '0'], 'bench:contention: --copies 0 must be a whole number ≥ 1'],
      [['--warmup', '5', '--steps', '5'], 'bench:contention: --warmup 5 leaves no step of --steps 5'],
      [['--bogus', '1'], /^bench:contention: Unknown argument: bogus/],
    ] as const) {
      const r = await bench([...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      if (typeof line === 'string') assert.equal(r.stderr.trim(), line);
      else assert.match(r.stderr.trim(), line);
    }
  });
});
