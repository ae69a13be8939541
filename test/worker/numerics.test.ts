import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SingleProcessGroup } from '../../worker/comm/process_group.js';
import { createMemoryGroups } from '../../worker/comm/memory_group.js';
import { checkStep, firstNonFinite, localFinding, NonFiniteError } from '../../worker/numerics.js';
import { TestHooks } from '../../worker/test_hooks.js';
import { GradBuffer } from '../../worker/grad_buffer.js';

/** A step buffer over these values: gradients, then the loss last. */
const gb = (values: number[]): GradBuffer => new GradBuffer(new Float32Array(values));
import { ConfigError } from '../../shared/errors.js';

test('firstNonFinite finds NaN and both infinities, -1 when all is finite', () => {
  assert.equal(firstNonFinite(new Float32Array([1, 2, 3])), -1);
  assert.equal(firstNonFinite(new Float32Array([1, Number.NaN, Infinity])), 1);
  assert.equal(firstNonFinite(new Float32Array([0, -Infinity])), 1);
  assert.equal(firstNonFinite(new Float32Array([3e38, 3e38]).map((x) => x * 2)), 0, 'float32 overflow is infinite');
});

test('localFinding tells the loss (last slot) from a gradient', () => {
  assert.equal(localFinding(0, gb([1, 2, 3])), undefined);
  assert.deepEqual(localFinding(2, gb([1, Infinity, 3])), { rank: 2, what: 'gradient', index: 1, value: 'Infinity' });
  assert.deepEqual(localFinding(1, gb([1, 2, Number.NaN])), { rank: 1, what: 'loss', index: -1, value: 'NaN' });
});

test('world of one: finite passes; stop throws naming the step and rank; skip describes it', async () => {
  const pg = new SingleProcessGroup();
  assert.equal(await checkStep(pg, 4, undefined, gb([1, 2]), 'stop'), undefined);
  const bad = gb([Number.NaN, 2]);
  await assert.rejects(
    checkStep(pg, 4, localFinding(0, bad), bad, 'stop'),
    (e) => e instanceof NonFiniteError && /at step 4: rank 0's gradient is NaN at index 0/.test(e.message) && /--on-nonfinite skip/.test(e.hint ?? ''),
  );
  assert.match((await checkStep(pg, 4, localFinding(0, bad), bad, 'skip')) ?? '', /at step 4: rank 0's gradient is NaN/);
  // With one rank the reduced buffer is the rank's own: checkStep finds the rank itself.
  await assert.rejects(checkStep(pg, 9, undefined, gb([Infinity]), 'stop'), /at step 9: rank 0's loss is Infinity/);
});

test('ranks that were all finite, whose sum overflowed: the error says so', async () => {
  const groups = createMemoryGroups(2);
  const outcomes = await Promise.allSettled(
    groups.map(async (pg) => {
      const buf = gb([3e38]);
      await pg.allReduce(buf.flat, 'sum');
      return checkStep(pg, 9, undefined, buf, 'stop');
    }),
  );
  await Promise.all(groups.map((g) => g.close()));
  for (const o of outcomes)
    assert.ok(
      o.status === 'rejected' && /at step 9: every rank was finite .*sum over ranks overflowed/.test(String(o.reason)),
      String(o.status === 'rejected' ? o.reason : o.value),
    );
});

test('three ranks agree: every rank rejects naming the one poisoned rank', async () => {
  const groups = createMemoryGroups(3);
  const outcomes = await Promise.allSettled(
    groups.map(async (pg) => {
      const buf = gb([1, 2, 3, 0.5]);
      if (pg.rank === 1) buf.flat[2] = Number.NaN;
      const mine = localFinding(pg.rank, buf);
      await pg.allReduce(buf.flat, 'sum');
      return checkStep(pg, 7, mine, buf, 'stop');
    }),
  );
  for (const o of outcomes) {
    assert.equal(o.status, 'rejected');
    assert.match(String((o as PromiseRejectedResult).reason.message), /^non-finite loss or gradient at step 7: rank 1's gradient is NaN at index 2$/);
  }
  await Promise.all(groups.map((g) => g.close()));
});

test('test hooks: parsed from the environment, malformed values name the variable', () => {
  assert.throws(
    () => TestHooks.read({ ROSEDIST_TEST_INJECT_NAN: 'three' }),
    (e) => e instanceof ConfigError && /ROSEDIST_TEST_INJECT_NAN/.test(e.message),
  );
  const hooks = TestHooks.read({ ROSEDIST_TEST_INJECT_NAN: '3:1' });
  const g = new Float32Array([1, 2]);
  hooks.poisonGradient(3, 0, g);
  hooks.poisonGradient(2, 1, g);
  assert.deepEqual([...g], [1, 2], 'another rank or step: untouched');
  hooks.poisonGradient(3, 1, g);
  assert.ok(Number.isNaN(g[0]));
  TestHooks.read({}).atStepStart(1, 0, 0); // nothing set: this process lives on
});
