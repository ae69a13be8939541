import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LineSplitter } from '../../launcher/lines.js';
import { outputPlan, parseStdSpec, stdFor, stdioFor } from '../../launcher/redirects.js';
import { ConfigError } from '../../shared/errors.js';

test('std specs: one value for all local ranks, or per local rank', () => {
  const all = parseStdSpec('--tee', '3');
  assert.deepEqual([0, 1, 7].map((r) => stdFor(all, r)), [3, 3, 3]);
  const per = parseStdSpec('--redirects', '0:1,2:3');
  assert.deepEqual([0, 1, 2].map((r) => stdFor(per, r)), [1, 0, 3]);
  for (const bad of ['4', 'x', '0:1:2', 'a:1', '0:5', '']) {
    assert.throws(() => parseStdSpec('--redirects', bad), (e: unknown) => e instanceof ConfigError && e.message.startsWith('--redirects'));
  }
});

test('a redirected stream leaves the console, a tee keeps it, the filter hides ranks from the console only', () => {
  const plan = (localRank: number, redirects: string, tee: string, filter?: number[], dir: string | null = '/logs/r/attempt_0/5') =>
    outputPlan({ rank: 5, localRank, redirects: parseStdSpec('--redirects', redirects), tee: parseStdSpec('--tee', tee), localRanksFilter: filter ? new Set(filter) : undefined, dir: dir ?? undefined });
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
