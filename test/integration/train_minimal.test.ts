/**
 * train_minimal as a user runs it: `node --import tsx worker/train_minimal.ts [flags]` in a fresh
 * directory (the default log, metrics and checkpoint paths are relative to it).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { readErrorFile } from '../../shared/error_file.js';
import { parseMetrics } from '../../shared/metrics.js';
import { packagePath, tsNodeArgs } from '../../shared/runtime.js';
import { runProcess, type ProcessExit } from '../../shared/subprocess.js';
import { parseEvalLine } from '../../worker/observe/metrics_log.js';
import { tinyGpt } from '../helpers/tiny_gpt.js';

const TINY = tinyGpt({ 'batch-size': 4, dataset: 'toy:60' });

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function freshDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'rosedist-minimal-'));
  dirs.push(d);
  return d;
}

const trainArgv = (args: string[]): string[] => [...tsNodeArgs(), packagePath('worker/train_minimal.ts'), ...args];

function trainMinimal(cwd: string, args: string[], env: Record<string, string> = {}): Promise<ProcessExit> {
  return runProcess(process.execPath, trainArgv(args), { cwd, env });
}

/** A word for `sh -c`, quoted. */
const shellQuote = (w: string): string => `'${w.replace(/'/g, `'\\''`)}'`;
const hasScript = spawnSync('script', ['--version'], { stdio: 'ignore' }).status === 0;

describe('train_minimal program', () => {
  it('writes the log header, one eval line per interval with ppl = exp(loss), metrics and a checkpoint', async () => {
    const cwd = freshDir();
    const exit = await trainMinimal(cwd, [...TINY, '--num-steps', '6', '--eval-interval', '2']);
    assert.equal(exit.code, 0, exit.stderr);
    const log = readFileSync(join(cwd, 'logs/train_minimal.log'), 'utf8');
    for (const pattern of [/train_minimal started .*: world size 1/, /rank 0: backend cpu/, /dataset: toy/, /model: GPT/, /arguments: \{/, /amp: false — /]) {
      assert.match(log, pattern);
      assert.equal(log.split('\n').filter((l) => pattern.test(l)).length, 1, `${pattern} once`);
    }
    // The resolved arguments and the run agree on amp (asked for by default, off on tfjs).
    assert.match(log, /arguments: \{.*"amp":false/);
    assert.doesNotMatch(log, /"amp":true/);
    assert.match(log, /amp: false — tfjs has no float16 training; running float32 \(--amp, the default, is ignored; --no-amp says so\)/);
    const lines = log
      .split('\n')
      .map(parseEvalLine)
      .filter((l) => l !== undefined);
    assert.deepEqual(
      lines.map((l) => l.step),
      [2, 4, 6],
    );
    for (const l of lines) {
      // Printed with 6 decimals (loss) and 3 (ppl): equal up to that rounding.
      assert.ok(Math.abs(l.valPpl - Math.exp(l.valLoss)) <= 5e-4 + 1e-6 * l.valPpl, `${l.valPpl} vs exp(${l.valLoss})`);
      assert.equal(l.numSteps, 6);
    }
    const metrics = parseMetrics(readFileSync(join(cwd, 'logs/train_minimal.metrics.jsonl'), 'utf8'));
    assert.deepEqual(
      metrics.map((m) => m.step),
      [2, 4, 6],
    );
    metrics.forEach((m, i) => {
      assert.equal(m.val_ppl, Math.exp(m.val_loss));
      assert.equal(m.val_loss.toFixed(6), lines[i].valLoss.toFixed(6));
      assert.equal(m.world_size, 1);
      assert.equal(m.backend, 'cpu');
    });
    assert.ok(existsSync(join(cwd, 'checkpoints/minigpt_single.safetensors')));
    // Rank 0's info lines reach the console too.
    assert.match(exit.stdout, /step 6\/6 \| train loss/);
  });

  it('an error before the logger exists is a JSON line too under --log-format json', async () => {
    const cwd = freshDir();
    for (const [args, env, pattern] of [
      [['--log-format', 'json', '--batch-size', 'many'], {}, /--batch-size "many" is not a number/],
      [['--log-format=json'], { WORLD_SIZE: 'two' }, /WORLD_SIZE/],
    ] as const) {
      const exit = await trainMinimal(cwd, [...args], env);
      assert.equal(exit.code, 2, exit.stderr);
      const lines = exit.stderr.split('\n').filter((l) => l.trim() !== '');
      assert.equal(lines.length, 1, exit.stderr);
      const entry = JSON.parse(lines[0] as string) as { level: string; message: string };
      assert.equal(entry.level, 'error');
      assert.match(entry.message, pattern);
    }
  });

  it('a bad flag exits 2 with one line (no stack) and an error file', async () => {
    const cwd = freshDir();
    const errorFile = join(cwd, 'error.json');
    const exit = await trainMinimal(cwd, ['--batch-size', 'many'], { ROSEDIST_ERROR_FILE: errorFile });
    assert.equal(exit.code, 2);
    const errLines = exit.stderr.split('\n').filter((l) => l.trim() !== '' && !/TensorFlow|tfjs-node|=====/.test(l));
    assert.equal(errLines.length, 1, exit.stderr);
    assert.match(errLines[0], /train_minimal: --batch-size "many" is not a number \(pass a number/);
    assert.doesNotMatch(exit.stderr, /\n\s+at /);
    const record = readErrorFile(errorFile);
    assert.equal(record?.name, 'ConfigError');
    assert.match(record?.message ?? '', /--batch-size/);
  });

  it('--resume with a damaged checkpoint exits 1 saying what is wrong; with another model, exit 2 naming the flags', async () => {
    const cwd = freshDir();
    const ok = await trainMinimal(cwd, [...TINY, '--num-steps', '1']);
    assert.equal(ok.code, 0, ok.stderr);
    const path = join(cwd, 'checkpoints/minigpt_single.safetensors');
    const mismatch = await trainMinimal(cwd, [...TINY, '--d-model', '32', '--num-steps', '2', '--resume']);
    assert.equal(mismatch.code, 2);
    assert.match(mismatch.stderr, /holds a different model: --d-model 16 there, 32 here/);
    const bytes = readFileSync(path);
    writeFileSync(path, bytes.subarray(0, bytes.length - 100));
    const damaged = await trainMinimal(cwd, [...TINY, '--num-steps', '2', '--resume']);
    assert.equal(damaged.code, 1);
    assert.match(damaged.stderr, /not a valid safetensors file: .*truncated/);
  });

  it('--log-format json: every console line is a JSON log entry (progress, eval lines, a late error); the file stays text', async () => {
    const cwd = freshDir();
    // wasm: the cpu backend prints a plain-text banner of its own on first use.
    const exit = await trainMinimal(cwd, [...TINY, '--backend', 'wasm', '--num-steps', '4', '--eval-interval', '2', '--log-format', 'json']);
    assert.equal(exit.code, 0, exit.stderr);
    assert.equal(exit.stderr, '');
    const entries = exit.stdout
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const e of entries) {
      assert.equal(e.level, 'info');
      assert.equal(e.rank, 0);
      assert.equal(typeof e.message, 'string');
      assert.ok(!Number.isNaN(Date.parse(String(e.timestamp))), JSON.stringify(e));
    }
    const messages = entries.map((e) => String(e.message));
    assert.deepEqual(
      messages
        .map(parseEvalLine)
        .filter((l) => l !== undefined)
        .map((l) => l.step),
      [2, 4],
    );
    assert.ok(
      messages.some((m) => /^step 4\/4 \(100%\) \| \d+ tok\/s \| ETA/.test(m)),
      'progress lines are entries too',
    );
    assert.ok(messages.some((m) => /^train_minimal started /.test(m)));
    const log = readFileSync(join(cwd, 'logs/train_minimal.log'), 'utf8');
    assert.match(log, /^\S+ INFO  train_minimal started /);
    assert.doesNotMatch(log, /"level"/);

    // An error raised once the run's logger exists (a missing corpus) is a JSON entry on stderr.
    const failed = await trainMinimal(cwd, [
      ...TINY,
      '--backend',
      'wasm',
      '--dataset',
      `text:${join(cwd, 'missing.txt')}`,
      '--vocab-size',
      '256',
      '--log-format',
      'json',
    ]);
    assert.equal(failed.code === 0, false);
    const errors = failed.stderr
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(errors.length, 1, failed.stderr);
    assert.equal(errors[0].level, 'error');
    assert.match(String(errors[0].message), /^train_minimal: .*missing\.txt/);
  });

  it(
    'on a terminal (a pseudo-terminal from script(1)): a live bar with eval lines above it; the log file gets no redraw',
    { skip: !hasScript && 'script(1) is not installed' },
    async () => {
      const cwd = freshDir();
      const command = [process.execPath, ...trainArgv([...TINY, '--backend', 'wasm', '--num-steps', '30', '--eval-interval', '10'])].map(shellQuote).join(' ');
      const exit = await runProcess('script', ['-qec', command, '/dev/null'], { cwd, env: { COLUMNS: '120' } });
      assert.equal(exit.code, 0, exit.stdout + exit.stderr);
      const screen = exit.stdout;
      // cli-progress redraws in place: back to column 1, then clear to the end of the line.
      assert.ok(screen.includes('\x1b[1G') && screen.includes('\x1b[0K'), JSON.stringify(screen.slice(0, 300)));
      assert.match(screen, /step \d+\/30 \|[█░]+\| \d+% \| \d+ tok\/s \| ETA \S+ \| train loss \d\.\d{3}/);
      assert.match(screen, /step 30\/30 \|█+\| 100%/);
      // Each eval line on a line of its own: the bar's line cleared first, a newline after it.
      for (const step of [10, 20, 30]) assert.match(screen, new RegExp(`\\r\\x1b\\[Kstep ${step}/30 \\| train loss \\S+ \\| val loss`));
      const log = readFileSync(join(cwd, 'logs/train_minimal.log'), 'utf8');
      assert.ok(!log.includes('\r') && !log.includes('\x1b'), 'no redraws in the log file');
      assert.deepEqual(
        log
          .split('\n')
          .map(parseEvalLine)
          .filter((l) => l !== undefined)
          .map((l) => l.step),
        [10, 20, 30],
      );
      assert.doesNotMatch(log, /tok\/s/);
    },
  );
});
