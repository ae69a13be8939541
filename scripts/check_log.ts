/**
 * Checks a train_ddp/train_minimal log file the way a person would read it: a header written once,
 * eval lines present, every ppl equal to exp(val loss), and only rank 0 writing (every line of the
 * file comes from the one process that owns it — the header names world size and ranks).
 *   node --import tsx scripts/check_log.ts logs/train_ddp.log [--expect-evals N]
 */
import { readFileSync } from 'node:fs';

const [path, flag, value] = process.argv.slice(2);
if (!path) {
  console.error('usage: check_log.ts LOG_FILE [--expect-evals N]');
  process.exitCode = 2;
} else {
  const text = readFileSync(path, 'utf8');
  const problems: string[] = [];
  const evals = [...text.matchAll(/step\s+(\d+).*?val loss\s+([\d.]+).*?val ppl\s+([\d.e+]+)/g)];
  if (evals.length === 0) problems.push('no eval lines ("step N ... val loss X ... val ppl Y")');
  for (const m of evals) {
    const loss = Number(m[2]);
    const ppl = Number(m[3]);
    // The log prints rounded figures: compare within the rounding of the printed loss.
    const rel = Math.abs(ppl - Math.exp(loss)) / Math.exp(loss);
    if (rel > 1e-3) problems.push(`step ${m[1]}: ppl ${ppl} is not exp(${loss}) = ${Math.exp(loss).toFixed(4)}`);
  }
  const headers = (text.match(/world size/gi) ?? []).length;
  if (headers === 0) problems.push('no header naming the world size');
  if (/\[rank [1-9]\d*\]/.test(text)) problems.push('lines from a rank other than 0');
  if (flag === '--expect-evals' && evals.length !== Number(value)) {
    problems.push(`expected ${value} eval lines, found ${evals.length}`);
  }
  if (problems.length > 0) {
    console.error(`${path}: ${problems.join('; ')}`);
    process.exitCode = 1;
  } else {
    console.log(`${path}: OK — ${evals.length} eval lines, ppl = exp(val loss) on each`);
  }
}
