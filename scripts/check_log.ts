/**
 * Checks a train_ddp/train_minimal log file the way a person would read it: a header written once,
 * eval lines present, every ppl equal to exp(val loss), and only rank 0 writing (no line carries
 * another rank's prefix, and the header appears once per run).
 *   node --import tsx scripts/check_log.ts logs/train_ddp.log [--expect-evals N]
 */
import { readFileSync } from 'node:fs';
import { parseEvalLine } from '../worker/observe/metrics_log.js';

const [path, flag, value] = process.argv.slice(2);
if (!path) {
  console.error('usage: check_log.ts LOG_FILE [--expect-evals N]');
  process.exitCode = 2;
} else {
  const lines = readFileSync(path, 'utf8').split('\n');
  const problems: string[] = [];
  const evals = lines.map(parseEvalLine).filter((e) => e !== undefined);
  if (evals.length === 0) problems.push('no eval lines ("step N/M | train loss X | val loss Y | val ppl Z | amp: false")');
  for (const e of evals) {
    // The line prints loss to 1e-6 and ppl to 1e-3: allow exactly that rounding.
    const expected = Math.exp(e.valLoss);
    const tolerance = 5e-4 + expected * 1e-6;
    if (Math.abs(e.valPpl - expected) > tolerance) {
      problems.push(`step ${e.step}: ppl ${e.valPpl} is not exp(${e.valLoss}) = ${expected.toFixed(4)}`);
    }
  }
  const headers = lines.filter((l) => / started .*: world size \d+/.test(l)).length;
  if (headers !== 1) problems.push(`expected one header naming the world size, found ${headers}`);
  if (lines.some((l) => /\[rank ?[1-9]\d*\]/.test(l))) problems.push('lines from a rank other than 0');
  if (flag === '--expect-evals' && evals.length !== Number(value)) {
    problems.push(`expected ${value} eval lines, found ${evals.length}`);
  }
  if (problems.length > 0) {
    console.error(`${path}: ${problems.join('; ')}`);
    process.exitCode = 1;
  } else {
    console.log(`${path}: OK — one header, ${evals.length} eval lines written by rank 0, ppl = exp(val loss) on each`);
  }
}
