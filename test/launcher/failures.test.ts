import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { failureOf, formatSummary, orderFailures } from '../../launcher/failures.js';
import { writeErrorFile } from '../../shared/error_file.js';
import { ConfigError } from '../../shared/errors.js';
import { tempDir } from '../helpers/launcher_run.js';

const who = (rank: number, errorFile?: string) => ({ rank, localRank: rank % 2, nodeRank: rank >> 1, nodeId: `h#${rank >> 1}`, pid: 100 + rank, errorFile });

test("a failure carries the worker's own message and the earlier of its two times", () => {
  const file = join(tempDir('fail'), 'error.json');
  const before = Date.now();
  writeErrorFile(file, new ConfigError('bad --lr', 'pass a positive number'), 3);
  const f = failureOf(who(3, file), 2, null, before + 60_000);
  assert.equal(f.message, 'ConfigError: bad --lr (pass a positive number)');
  assert.ok(f.time >= before && f.time < before + 60_000, 'the error file was written before the exit was seen');
  const killed = failureOf(who(1, join(tempDir('fail'), 'none.json')), null, 'SIGKILL', 1234);
  assert.deepEqual([killed.message, killed.time, killed.signal, killed.exitCode], [undefined, 1234, 'SIGKILL', null]);
});

test('the summary puts the earliest failure first, then the others', () => {
  const late = failureOf(who(0), 1, null, 2000);
  const root = { ...failureOf(who(2), null, 'SIGKILL', 1000) };
  const tie = failureOf(who(1), 3, null, 2000);
  assert.deepEqual(
    orderFailures([late, tie, root]).map((f) => f.rank),
    [2, 0, 1],
  );
  const text = formatSummary({ runId: 'r', attempt: 1, maxRestarts: 1, failures: [late, tie, root], reason: undefined, showErrorFiles: false });
  const lines = text.split('\n');
  assert.match(lines[0] ?? '', /run r failed on attempt 1 \(max restarts 1\)/);
  const rootAt = lines.findIndex((l) => /root cause/.test(l));
  const othersAt = lines.findIndex((l) => /other failures/.test(l));
  assert.match(lines[rootAt + 1] ?? '', /rank 2 \(local rank 0, node 1 h#1, pid 102\) was killed by SIGKILL at 1970-01-01T00:00:01.000Z/);
  assert.ok(othersAt > rootAt);
  assert.ok(text.indexOf('rank 0 (') < text.indexOf('rank 1 ('));
  assert.match(text, /rank 1 \(.*\) exited with code 3/);
});

test("a worker's latest collectives travel through its error file into the summary; malformed entries are dropped", () => {
  const file = join(tempDir('fail'), 'error.json');
  const collectives = [
    { seq: 6, op: 'broadcast(root 0, uint8[12])', bytes: 12, state: 'done' as const },
    { seq: 7, op: 'allReduce(sum, float32[100])', bytes: 400, state: 'failed' as const },
  ];
  writeErrorFile(file, new Error('stuck'), 0, collectives);
  const f = failureOf(who(0, file), 1, null, Date.now());
  assert.deepEqual(f.collectives, collectives);
  const text = formatSummary({ runId: 'r', attempt: 0, maxRestarts: 0, failures: [f], reason: undefined, showErrorFiles: false });
  assert.match(
    text,
    /last collectives \(oldest first\):\n\s+#6 broadcast\(root 0, uint8\[12\]\), 12 bytes: done\n\s+#7 allReduce\(sum, float32\[100\]\), 400 bytes: failed/,
  );
  writeFileSync(file, JSON.stringify({ message: 'x', collectives: [{ seq: 'one' }, collectives[0]] }));
  assert.deepEqual(failureOf(who(0, file), 1, null, 0).collectives, [collectives[0]]);
  const none = failureOf(who(1), 1, null, 0);
  assert.doesNotMatch(
    formatSummary({ runId: 'r', attempt: 0, maxRestarts: 0, failures: [none], reason: undefined, showErrorFiles: false }),
    /last collectives/,
  );
});

test("torch's error file (@record): its message, where it raised, and a time in seconds that an earlier exit beats", () => {
  const file = join(tempDir('fail'), 'error.json');
  const callstack = [
    'Traceback (most recent call last):',
    '  File "/usr/lib/python3/dist-packages/torch/distributed/elastic/multiprocessing/errors/__init__.py", line 346, in wrapper',
    '    return f(*args, **kwargs)',
    '  File "/job/train.py", line 12, in main',
    '    raise ValueError("loss is\\nnan")',
    'ValueError: loss is',
    'nan',
    '',
  ].join('\n');
  // As torch's ErrorHandler.record_exception writes it: Unix seconds, as a string.
  writeFileSync(file, JSON.stringify({ message: { message: 'ValueError: loss is\nnan', extraInfo: { py_callstack: callstack, timestamp: '1764590000' } } }));
  const f = failureOf(who(1, file), 1, null, 1764590000_500);
  assert.equal(f.message, 'ValueError: loss is nan', 'one line, named as torch names it');
  assert.equal(f.traceback, 'File "/job/train.py", line 12, in main → ValueError: loss is nan');
  assert.equal(f.time, 1764590000_500, 'within its second, the exit the launcher saw decides');
  assert.equal(failureOf(who(1, file), 1, null, 1764590009_000).time, 1764590000_999, 'the second it was written bounds it');
  // A peer killed earlier in the same second is the root cause.
  const killed = failureOf(who(0), null, 'SIGKILL', 1764590000_400);
  assert.deepEqual(
    orderFailures([f, killed]).map((x) => x.rank),
    [0, 1],
  );
  const text = formatSummary({ runId: 'r', attempt: 0, maxRestarts: 0, failures: [f], reason: undefined, showErrorFiles: true });
  assert.match(text, /message: ValueError: loss is nan\n\s+traceback: File "\/job\/train.py", line 12, in main → ValueError: loss is nan\n\s+error file: /);
  // torch's older form: a plain message and a numeric timestamp in seconds.
  writeFileSync(file, JSON.stringify({ message: 'Signal 9 (SIGKILL) received by PID 7', timestamp: 1764590001 }));
  const old = failureOf(who(1, file), 1, null, 1764590009_000);
  assert.deepEqual([old.message, old.time, old.traceback], ['Signal 9 (SIGKILL) received by PID 7', 1764590001_999, undefined]);
  // No error file: a hint at @record when the worker exited by itself, none when it was killed.
  const summary = (x: ReturnType<typeof failureOf>) =>
    formatSummary({ runId: 'r', attempt: 0, maxRestarts: 0, failures: [x], reason: undefined, showErrorFiles: false });
  assert.match(summary(failureOf(who(1), 1, null, 0)), /message: \(no error file: .*wrapped in torch\.distributed\.elastic\.multiprocessing\.errors\.record\)/);
  assert.doesNotMatch(summary(failureOf(who(1), null, 'SIGKILL', 0)), /record/);
  // Our own records keep their JavaScript stack out of the summary.
  writeErrorFile(file, new Error('plain'), 1);
  assert.equal(failureOf(who(1, file), 1, null, Date.now()).traceback, undefined);
});
