import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import { LineSplitter } from '../../launcher/lines.js';
import { attachOutput, outputPlan, parseStdSpec, stdFor, stdioFor } from '../../launcher/redirects.js';
import { ConfigError } from '../../shared/errors.js';

test('std specs: one value for all local ranks, or per local rank', () => {
  const all = parseStdSpec('--tee', '3');
  assert.deepEqual(
    [0, 1, 7].map((r) => stdFor(all, r)),
    [3, 3, 3],
  );
  const per = parseStdSpec('--redirects', '0:1,2:3');
  assert.deepEqual(
    [0, 1, 2].map((r) => stdFor(per, r)),
    [1, 0, 3],
  );
  for (const bad of ['4', 'x', '0:1:2', 'a:1', '0:5', '']) {
    assert.throws(
      () => parseStdSpec('--redirects', bad),
      (e: unknown) => e instanceof ConfigError && e.message.startsWith('--redirects'),
    );
  }
});

test('a redirected stream leaves the console, a tee keeps it, the filter hides ranks from the console only', () => {
  const plan = (localRank: number, redirects: string, tee: string, filter?: number[], dir: string | null = '/logs/r/attempt_0/5') =>
    outputPlan({
      rank: 5,
      localRank,
      redirects: parseStdSpec('--redirects', redirects),
      tee: parseStdSpec('--tee', tee),
      localRanksFilter: filter ? new Set(filter) : undefined,
      dir: dir ?? undefined,
    });
  const p = plan(1, '1', '2');
  assert.deepEqual(p.console, { stdout: false, stderr: true });
  assert.deepEqual(p.files, { stdout: '/logs/r/attempt_0/5/stdout.log', stderr: '/logs/r/attempt_0/5/stderr.log' });
  const none = plan(1, '0', '0');
  assert.deepEqual(none.console, { stdout: true, stderr: true });
  assert.deepEqual(none.files, { stdout: undefined, stderr: undefined });
  const hidden = plan(1, '0', '3', [0]);
  assert.deepEqual(hidden.console, { stdout: false, stderr: false });
  assert.equal(hidden.files.stdout, '/logs/r/attempt_0/5/stdout.log');
  // Nobody reads a stream that goes nowhere: no pipe for it.
  assert.deepEqual(stdioFor(plan(1, '1', '0', [0])), ['ignore', 'pipe', 'ignore']);
  assert.deepEqual(stdioFor(plan(1, '1', '0', [0], null)), ['ignore', 'ignore', 'ignore']);
});

test('lines are cut at newlines across chunks; the last partial line comes out on flush', () => {
  const lines: string[] = [];
  const s = new LineSplitter((l) => lines.push(l));
  s.push('ab');
  s.push('c\nde');
  s.push('f\n\ng');
  assert.deepEqual(lines, ['abc', 'def', '']);
  s.flush();
  assert.deepEqual(lines, ['abc', 'def', '', 'g']);
  s.flush();
  assert.equal(lines.length, 4);
});

test('bytes: a UTF-8 character split across chunks is decoded whole', () => {
  const lines: string[] = [];
  const s = new LineSplitter((l) => lines.push(l));
  const bytes = Buffer.from('日本語\n😀x\n');
  // Every cut, including inside the 3-byte and 4-byte characters.
  for (let i = 0; i < bytes.length; i += 1) s.push(bytes.subarray(i, i + 1));
  assert.deepEqual(lines, ['日本語', '😀x']);
});

test('a line longer than maxLine comes out in pieces, never inside a surrogate pair; pending stays below maxLine', () => {
  const lines: string[] = [];
  const s = new LineSplitter((l) => lines.push(l), { maxLine: 4 });
  s.push('abc😀defgh');
  assert.ok(s.pendingLength < 4);
  s.push('ij\n');
  assert.deepEqual(lines, ['abc', '😀de', 'fghi', 'j']);
  lines.length = 0;
  s.push('abcd\nabcdefgh\n');
  assert.deepEqual(lines, ['abcd', 'abcd', 'efgh'], 'a line of exactly k pieces: no empty line after it');
  lines.length = 0;
  s.push('abcdefgh');
  s.push('\n');
  assert.deepEqual(lines, ['abcd', 'efgh']);
});

/** Lets the test's time limit fire between chunks (it cannot interrupt synchronous code). */
const tick = () => new Promise<void>((r) => setImmediate(r));

test('linear in the line length: one 64 MiB line in 64 KiB chunks', { timeout: 30_000 }, async () => {
  let pieces = 0;
  let total = 0;
  const s = new LineSplitter((l) => ((pieces += 1), (total += l.length)), { maxLine: 1 << 16 });
  const chunk = Buffer.alloc(1 << 16, 'x');
  // Quadratic re-splitting would take hours here; the time limit catches it.
  for (let i = 0; i < 1024; i += 1) {
    s.push(chunk);
    await tick();
  }
  s.push('\n');
  assert.deepEqual([pieces, total], [1024, 1 << 26]);
});

test('linear in the chunk size: short lines in 1 MiB chunks, `\\r` mode (no search of the whole chunk per line)', { timeout: 30_000 }, async () => {
  let lines = 0;
  const s = new LineSplitter(() => (lines += 1), { maxLine: 1 << 16, carriageReturn: true });
  const chunk = Buffer.from('123456789\n'.repeat(1 << 17));
  // Searching the rest of each chunk for `\r` once per line would scan ~7·10^10 bytes per chunk
  // here (minutes for the 32); linear, a second or two.
  for (let i = 0; i < 32; i += 1) {
    s.push(chunk);
    await tick();
  }
  assert.equal(lines, 32 << 17);
});

test('carriageReturn: `\\r` ends a line, `\\r\\n` is one end even across chunks, redraws within a chunk collapse to the last', () => {
  const lines: string[] = [];
  const s = new LineSplitter((l) => lines.push(l), { carriageReturn: true });
  s.push('a\r');
  s.push('\nb\r\nc\rd\re\r');
  s.push('f');
  s.flush();
  assert.deepEqual(lines, ['a', 'b', 'e', 'f']);
  const plain: string[] = [];
  const p = new LineSplitter((l) => plain.push(l));
  p.push('x\ry\n');
  assert.deepEqual(plain, ['x\ry'], 'control lines: only \\n ends a line');
});

test("backpressure: a slow console pauses the worker's pipe instead of buffering its output", { timeout: 60_000 }, async () => {
  const total = 16 << 20;
  const child = spawn(
    process.execPath,
    [
      '-e',
      `const b = Buffer.alloc(1 << 16, 'z'); b[b.length - 1] = 10; let n = ${total / (1 << 16)}; (function w() { while (n > 0) { n -= 1; if (!process.stdout.write(b)) return process.stdout.once('drain', w); } })();`,
    ],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  let received = 0;
  let maxBuffered = 0;
  const sink = new Writable({
    highWaterMark: 1 << 16,
    write(chunk: Buffer, _enc, done) {
      received += chunk.length;
      maxBuffered = Math.max(maxBuffered, this.writableLength);
      setTimeout(done, 1);
    },
  });
  const plan = { rank: 0, console: { stdout: true, stderr: false }, files: { stdout: undefined, stderr: undefined } };
  await attachOutput(child, plan, { stdout: sink, stderr: sink });
  // The relay has handed everything over; the sink may still be working through its queue.
  await new Promise<void>((resolve) => sink.end(resolve));
  // Each 64 KiB line becomes a prefixed line: the bytes arrive, plus 8 per line.
  assert.equal(received, total + 8 * (total >> 16));
  assert.ok(maxBuffered <= 4 << 20, `the sink held at most ${maxBuffered} bytes of ${total} (no backpressure: nearly all of them)`);
});
