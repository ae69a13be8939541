/** The launcher relays worker output: whole UTF-8 characters, long lines in pieces, `\r` progress. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { MAX_CONSOLE_LINE } from '../../launcher/redirects.js';
import { runLauncher } from '../helpers/launcher_run.js';

const OUTPUT_WORKER = fileURLToPath(new URL('../fixtures/output_worker.ts', import.meta.url));

/** The fixture's Japanese line (test/fixtures/output_worker.ts). */
const japaneseLine = (i: number) => `行 ${i}: 日本語のテキストです。文字が途中で切れないこと。`;

function rankLines(stdout: string, rank: number): string[] {
  const prefix = `[rank${rank}]:`;
  return stdout
    .split('\n')
    .filter((l) => l.startsWith(prefix))
    .map((l) => l.slice(prefix.length));
}

test('20,000 lines of Japanese from 2 ranks, cut inside characters by the writer: every character arrives whole', { timeout: 120_000 }, async () => {
  const n = 20_000;
  const r = await runLauncher(['--nproc-per-node', '2', OUTPUT_WORKER, '--japanese', String(n)]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(!r.stdout.includes('\uFFFD'), 'no replacement character');
  const expected = Array.from({ length: n }, (_, i) => japaneseLine(i));
  for (const rank of [0, 1]) assert.deepEqual(rankLines(r.stdout, rank), expected, `rank ${rank}'s lines`);
  assert.equal(r.stdout.split('\n').filter((l) => l !== '').length, 2 * n, 'nothing but prefixed lines');
});

test('one 4.5 MiB line without a newline: shown in prefixed pieces of at most MAX_CONSOLE_LINE, nothing lost or broken', { timeout: 120_000 }, async () => {
  const bytes = 9 << 19; // whole 9-byte units of 'abc日本': 4.5 MiB
  const r = await runLauncher([OUTPUT_WORKER, '--one-line', String(bytes), '--utf8']);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n');
  assert.equal(lines.pop(), '', 'ends with a newline');
  assert.ok(
    lines.every((l) => l.startsWith('[rank0]:')),
    'every piece carries the prefix',
  );
  const pieces = rankLines(r.stdout, 0);
  assert.ok(pieces.length >= Math.floor(bytes / 3 / MAX_CONSOLE_LINE), `${pieces.length} pieces`);
  assert.ok(
    pieces.every((p) => p.length <= MAX_CONSOLE_LINE),
    'no piece longer than the cap',
  );
  const text = pieces.join('');
  assert.equal(Buffer.byteLength(text), bytes, 'every byte relayed');
  assert.ok(!text.includes('\uFFFD'), 'no character cut');
  assert.match(text.slice(0, 14), /^(abc日本){2}/);
});

test('`\\r` progress output: each state a prefixed line, never a raw `\\r` on the console', { timeout: 60_000 }, async () => {
  const r = await runLauncher([OUTPUT_WORKER, '--progress', '30']);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(!r.stdout.includes('\r'), JSON.stringify(r.stdout.slice(0, 200)));
  const lines = rankLines(r.stdout, 0);
  assert.equal(lines.at(-1), 'done');
  const steps = lines.slice(0, -1).map((l) => Number(/^step (\d+)\/30$/.exec(l)?.[1]));
  assert.ok(steps.length > 0 && steps.every((s, i) => s > 0 && (i === 0 || s > (steps[i - 1] ?? 0))), `steps in order: ${steps.join(',')}`);
});
