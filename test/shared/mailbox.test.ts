import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Mailbox } from '../../shared/mailbox.js';

test('items come out in the order they went in, queued or handed to a waiting reader', async () => {
  const box = new Mailbox<number>();
  box.put(1);
  box.put(2);
  assert.equal(box.length, 2);
  assert.equal(await box.take(), 1);
  assert.equal(await box.take(), 2);
  const waiting = box.take();
  assert.ok(box.waiting);
  box.put(3);
  box.put(4);
  assert.equal(await waiting, 3);
  assert.equal(box.waiting, false);
  assert.deepEqual(box.drain(), [4]);
  assert.equal(box.length, 0);
});

test('one reader at a time: a second pending take rejects and the first still gets the next item', async () => {
  const box = new Mailbox<string>();
  const first = box.take();
  await assert.rejects(box.take(), /already pending/);
  box.put('a');
  assert.equal(await first, 'a');
});

test('take(timeoutMs): undefined after the timeout or on interrupt(), and the mailbox is usable again', async () => {
  const box = new Mailbox<string>();
  assert.equal(await box.take(10), undefined);
  assert.equal(box.waiting, false);
  const interrupted = box.take(60_000);
  box.interrupt();
  assert.equal(await interrupted, undefined);
  box.put('b');
  assert.equal(await box.take(10), 'b');
  // An untimed take is not ended by interrupt().
  const untimed = box.take();
  box.interrupt();
  box.put('c');
  assert.equal(await untimed, 'c');
});
