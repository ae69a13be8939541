/**
 * PyTorch's own DDP under our launcher, against the same script under torchrun: the strictest test
 * of the environment contract (torch's env:// rendezvous reads it and Gloo trains over it).
 * Needs python3-torch and the anchors (test/helpers/python.ts says where they are looked for).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { runProcess } from '../../shared/subprocess.js';
import { BIN } from '../helpers/launcher_run.js';
import { freePort } from '../helpers/ports.js';
import { findAnchors, findPython } from '../helpers/python.js';

const torch = findPython({ torch: true });
const anchors = findAnchors();

/** Run to the end; `out` is stdout then stderr (the result line is on stdout, errors on either). */
async function run(command: string, args: readonly string[], env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  const r = await runProcess(command, args, { env });
  return { code: r.code, out: r.stdout + r.stderr };
}

/** The reference trainer's final JSON line (rank 0's), whatever prefix the launcher put before it. */
function finalResult(out: string): { world_size: number; step: number; val_loss: number } {
  const line = out.split('\n').find((l) => l.includes('{"world_size"'));
  assert.ok(line !== undefined, `no result line in:\n${out}`);
  return JSON.parse(line.slice(line.indexOf('{'))) as { world_size: number; step: number; val_loss: number };
}

test("torch_ddp_ref.py on 2 workers: rosedist gives torchrun's final val loss", { skip: torch.skip ?? anchors.skip, timeout: 300_000 }, async () => {
  const dir = anchors.dir ?? '';
  const script = join(dir, 'torch_ddp_ref.py');
  const ours = await run(process.execPath, [BIN, '--nproc-per-node=2', script, '--num-steps', '20'], { PYTHON: torch.python ?? '' });
  assert.equal(ours.code, 0, ours.out);
  const theirs = await run(join(dir, 'torchrun.sh'), ['2', script, '--num-steps', '20'], { MASTER_PORT: String(await freePort()) });
  assert.equal(theirs.code, 0, theirs.out);
  const [a, b] = [finalResult(ours.out), finalResult(theirs.out)];
  assert.deepEqual([a.world_size, a.step], [2, 20]);
  assert.deepEqual([b.world_size, b.step], [2, 20]);
  assert.ok(Number.isFinite(a.val_loss) && a.val_loss > 0, `a real loss: ${a.val_loss}`);
  // Same seeds, same data, same Gloo sums: the same float64, bit for bit.
  assert.equal(a.val_loss, b.val_loss);
});
