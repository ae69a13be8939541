import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { MAX_TIMER_MS, parseSeconds, setLongTimeout, sleep, timeoutMs } from '../../shared/timers.js';

test('a delay beyond 2^31 ms fires when it says, not at once (chained timers)', () => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  try {
    let fired = 0;
    const warnings: string[] = [];
    const onWarning = (w: Error) => w.name === 'TimeoutOverflowWarning' && warnings.push(w.name);
    process.on('warning', onWarning);
    const ms = 10_000_000 * 1000; // --join-timeout 10000000 (s)
    setLongTimeout(() => (fired += 1), ms);
    mock.timers.tick(1000);
    assert.equal(fired, 0, 'not after a second');
    mock.timers.tick(MAX_TIMER_MS);
    assert.equal(fired, 0, 'not after the first 2^31 ms either');
    mock.timers.tick(ms - MAX_TIMER_MS - 1001);
    assert.equal(fired, 0);
    mock.timers.tick(1);
    assert.equal(fired, 1);
    process.off('warning', onWarning);
    assert.deepEqual(warnings, []);
  } finally {
    mock.timers.reset();
  }
});

test('Infinity never fires; clear cancels', () => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  try {
    let fired = 0;
    setLongTimeout(() => (fired += 1), Infinity);
    const t = setLongTimeout(() => (fired += 1), 50);
    t.clear();
    mock.timers.tick(MAX_TIMER_MS * 4);
    assert.equal(fired, 0);
  } finally {
    mock.timers.reset();
  }
});

test('real timers: no TimeoutOverflowWarning for a huge delay, and it does not fire', async () => {
  const warnings: string[] = [];
  const onWarning = (w: Error) => w.name === 'TimeoutOverflowWarning' && warnings.push(w.name);
  process.on('warning', onWarning);
  let fired = false;
  const t = setLongTimeout(() => (fired = true), 2 ** 40);
  await new Promise((r) => setTimeout(r, 100));
  t.clear();
  process.off('warning', onWarning);
  assert.equal(fired, false);
  assert.deepEqual(warnings, []);
});

test('sleep: an abort ends it early and leaves no listener behind', async () => {
  const abort = new AbortController();
  for (let i = 0; i < 20; i += 1) await sleep(1, { signal: abort.signal });
  assert.equal(getEventListeners(abort.signal, 'abort').length, 0, 'no listener per sleep');
  const forever = sleep(Infinity, { signal: abort.signal });
  assert.equal(getEventListeners(abort.signal, 'abort').length, 1);
  abort.abort();
  await forever;
  assert.equal(getEventListeners(abort.signal, 'abort').length, 0);
});

test('seconds: 0 and inf mean no timeout', () => {
  assert.equal(timeoutMs(0), Infinity);
  assert.equal(timeoutMs(parseSeconds('inf')), Infinity);
  assert.equal(timeoutMs(parseSeconds('Never')), Infinity);
  assert.equal(timeoutMs(1.5), 1500);
  assert.ok(Number.isNaN(parseSeconds('')));
  assert.ok(Number.isNaN(parseSeconds('x')));
});
