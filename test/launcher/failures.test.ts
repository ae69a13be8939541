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
  assert.deepEqual(orderFailures([late, tie, root]).map((f) => f.rank), [2, 0, 1]);
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
  assert.match(text, /last collectives \(oldest first\):\n\s+#6 broadcast\(root 0, uint8\[12\]\), 12 bytes: done\n\s+#7 allReduce\(sum, float32\[100\]\), 400 bytes: failed/);
  writeFileSync(file, JSON.stringify({ message: 'x', collectives: [{ seq: 'one' }, collectives[0]] }));
  assert.deepEqual(failureOf(who(0, file), 1, null, 0).collectives, [collectives[0]]);
  const none = failureOf(who(1), 1, null, 0);
  assert.doesNotMatch(formatSummary({ runId: 'r', attempt: 0, maxRestarts: 0, failures: [none], reason: undefined, showErrorFiles: false }), /last collectives/);
});
