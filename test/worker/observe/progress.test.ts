import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { barWidth, createProgress, etaSeconds, formatDuration, RateMeter } from '../../../worker/observe/progress.js';
import { packagePath, tsNodeArgs } from '../../../shared/runtime.js';
import { runProcess, type ProcessExit } from '../../../shared/subprocess.js';

const ESC = '\x1b';

/** Run `body` in a fresh Node process whose stdout and stderr are pipes (not TTYs). */
function runChild(body: string): Promise<ProcessExit> {
  const url = new URL(`file://${packagePath('worker/observe/progress.ts')}`).href;
  const script = `const { createProgress } = await import(${JSON.stringify(url)});\n${body}`;
  return runProcess(process.execPath, [...tsNodeArgs(), '--input-type=module', '-e', script]);
}

test('no TTY (a real pipe): plain lines on the first, every 4th and the last step, no redraws', async () => {
  const r = await runChild(`
    const p = createProgress({ total: 10, startStep: 0, enabled: true, plainEverySteps: 4 });
    console.log(p.mode);
    for (let step = 1; step <= 10; step += 1) {
      p.update(step, { tokensPerSec: 1000 * step, trainLoss: 4 - step / 10, ...(step === 5 ? { valPpl: 33.333 } : {}) });
    }
    p.stop();
  `);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'lines');
  assert.ok(!r.stderr.includes('\r') && !r.stderr.includes(ESC), 'no carriage returns or escape sequences');
  const lines = r.stderr.trimEnd().split('\n');
  assert.deepEqual(
    lines.map((l) => l.split(' ')[1]),
    ['1/10', '4/10', '8/10', '10/10'],
  );
  assert.match(lines[0], /^step 1\/10 \(10%\) \| 1000 tok\/s \| ETA - \| train loss 3\.900 \| val ppl -$/);
  // The val ppl of step 5 is kept until the next evaluation.
  assert.match(lines[2], /^step 8\/10 \(80%\) \| 8000 tok\/s \| ETA \S+ \| train loss 3\.200 \| val ppl 33\.33$/);
  assert.match(lines[3], /^step 10\/10 \(100%\) \| 10000 tok\/s \| ETA 0s \| train loss 3\.000 \| val ppl 33\.33$/);
});

test('no TTY with a write callback: lines go to write, the stream (a file) gets nothing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rosedist-progress-'));
  try {
    const file = join(dir, 'console.txt');
    const stream = createWriteStream(file) as unknown as NodeJS.WriteStream;
    const lines: string[] = [];
    // A resumed run: 50 steps left, so the default is a line about every ceil(50 / 20) = 3 steps.
    const p = createProgress({ total: 100, startStep: 50, enabled: true, stream, write: (l) => lines.push(l) });
    assert.equal(p.mode, 'lines');
    for (let step = 51; step <= 100; step += 1) p.update(step, { trainLoss: 2 });
    p.log('eval at step 100');
    p.stop();
    await new Promise<void>((resolve) => stream.end(resolve));
    assert.equal(readFileSync(file, 'utf8'), '');
    const steps = lines.filter((l) => l.startsWith('step ')).map((l) => Number(/^step (\d+)/.exec(l)?.[1]));
    const expected = [51];
    for (let s = 52; s <= 100; s += 1) if (Math.floor(s / 3) > Math.floor(expected[expected.length - 1] / 3) || s === 100) expected.push(s);
    assert.deepEqual(steps, expected);
    assert.equal(lines[lines.length - 1], 'eval at step 100');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('stop() prints the last state once if the last update was not printed', () => {
  const lines: string[] = [];
  const p = createProgress({
    total: 100,
    startStep: 0,
    enabled: true,
    stream: new PassThrough() as unknown as NodeJS.WriteStream,
    plainEverySteps: 10,
    write: (l) => lines.push(l),
  });
  for (let step = 1; step <= 13; step += 1) p.update(step, {});
  p.stop();
  p.stop();
  assert.deepEqual(
    lines.map((l) => l.split(' ')[1]),
    ['1/100', '10/100', '13/100'],
  );
});

test('TTY (fake terminal): a bar redrawn in place, nothing through write', async () => {
  const tty = new PassThrough();
  let out = '';
  tty.on('data', (d: Buffer) => (out += d.toString()));
  Object.assign(tty, { isTTY: true, columns: 160 });
  const written: string[] = [];
  const p = createProgress({ total: 10, startStep: 2, enabled: true, stream: tty as unknown as NodeJS.WriteStream, write: (l) => written.push(l) });
  assert.equal(p.mode, 'bar');
  p.update(3, { tokensPerSec: 1234.4, trainLoss: 2.5 });
  p.update(4, { valPpl: 12.3456 });
  p.log('eval: val loss 2.513');
  p.stop();
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(written, []);
  // Redraws return to column 0 (readline.cursorTo writes CSI 1 G) and clear to the right.
  assert.ok(out.includes(`${ESC}[1G`) && out.includes(`${ESC}[0K`), JSON.stringify(out.slice(0, 200)));
  assert.match(out, /step 2\/10 \|.*\| 20% \| - tok\/s/);
  assert.match(out, /step 4\/10 \|.*\| 40% \| 1234 tok\/s \| ETA \S+ \| train loss 2\.500 \| val ppl 12\.35/);
  // The log line stands on its own line, and the bar is drawn again after it.
  const after = out.split('\r\x1b[Keval: val loss 2.513\n');
  assert.equal(after.length, 2, 'log line printed once, after clearing the bar line');
  assert.match(after[1], /step 4\/10/);
  assert.ok(out.endsWith('\n'), 'stop() leaves the cursor on a fresh line');
  // No cursor save/restore: a restore after the log line would jump back above it.
  assert.ok(!out.includes(`${ESC}7`) && !out.includes(`${ESC}8`));
});

test('disabled: no output at all', () => {
  const tty = Object.assign(new PassThrough(), { isTTY: true });
  let out = '';
  tty.on('data', (d: Buffer) => (out += d.toString()));
  const written: string[] = [];
  const p = createProgress({ total: 10, startStep: 0, enabled: false, stream: tty as unknown as NodeJS.WriteStream, write: (l) => written.push(l) });
  assert.equal(p.mode, 'off');
  p.update(1, { trainLoss: 1 });
  p.log('x');
  p.stop();
  assert.deepEqual([out, written], ['', []]);
});

test('ETA: steps left over the mean rate since the first update', () => {
  // 20 steps in 10 s after the first update at step 10: 2 steps/s, 70 steps left.
  assert.equal(etaSeconds(30, 100, { step: 10, ms: 0 }, 10_000), 70 / 2);
  assert.equal(etaSeconds(10, 100, { step: 10, ms: 0 }, 10_000), undefined);
  assert.equal(etaSeconds(120, 100, { step: 10, ms: 0 }, 10_000), 0);
  assert.deepEqual([5, 187, 7530, undefined].map(formatDuration), ['5s', '3m07s', '2h05m', '-']);
});

test('bar: false on a TTY gives plain lines through write, nothing drawn on the terminal', () => {
  const tty = Object.assign(new PassThrough(), { isTTY: true, columns: 120 });
  let out = '';
  tty.on('data', (d: Buffer) => (out += d.toString()));
  const written: string[] = [];
  const p = createProgress({ total: 4, startStep: 0, enabled: true, bar: false, stream: tty as unknown as NodeJS.WriteStream, write: (l) => written.push(l) });
  assert.equal(p.mode, 'lines');
  for (let step = 1; step <= 4; step += 1) p.update(step, { trainLoss: 1 });
  p.stop();
  assert.equal(out, '');
  assert.deepEqual(
    written.map((l) => l.split(' ')[1]),
    ['1/4', '2/4', '3/4', '4/4'],
  );
});

test('barWidth leaves room for the text on one line, between 5 and 24 cells', () => {
  const text = (total: number) => `step ${total}/${total} || 100% | 9999 tok/s | ETA 9m59s | train loss 9.999 | val ppl 99.99`.length;
  assert.equal(barWidth(200, 300), 24);
  assert.equal(barWidth(40, 300), 5);
  assert.equal(barWidth(undefined, 300), barWidth(80, 300));
  const w = barWidth(text(300) + 1 + 12, 300);
  assert.equal(w, 12);
  // One more digit in the step count takes two cells from the bar.
  assert.equal(barWidth(text(300) + 1 + 12, 3000), 10);
});

test('RateMeter: units over seconds of the last `window` samples', () => {
  const m = new RateMeter(3);
  assert.equal(m.rate(), undefined);
  m.add(100, 0);
  assert.equal(m.rate(), undefined);
  m.add(100, 1);
  m.add(100, 1);
  assert.equal(m.rate(), 300 / 2);
  // The first sample (100 units in 0 s) leaves the window: 300 units over 3 s.
  m.add(100, 1);
  assert.equal(m.rate(), 100);
  m.add(400, 1);
  assert.equal(m.rate(), 600 / 3);
});
