import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CommError } from '../../../shared/errors.js';
import { checkHeader, decodeHeader, describe, encodeHeader, HEADER_BYTES, type Header } from '../../../worker/comm/frames.js';

const h: Header = { kind: 'allReduce', seq: 42, dtype: 'float32', count: 2_973_184, op: 'mean', step: 3, segment: 11 };

test('header round trip', () => {
  const bytes = encodeHeader(h);
  assert.equal(bytes.byteLength, HEADER_BYTES);
  assert.deepEqual(decodeHeader(bytes), { ...h, root: undefined, wire: undefined });
  const compressed: Header = { ...h, wire: 'fp16' };
  assert.deepEqual(decodeHeader(encodeHeader(compressed)), { ...compressed, root: undefined });
  assert.equal(describe(compressed), '#42 allReduce(mean, float32[2973184] as fp16)');
  const b: Header = { kind: 'broadcast', seq: 1, dtype: 'uint8', count: 0, root: 7, step: 1, segment: 0 };
  assert.deepEqual(decodeHeader(encodeHeader(b)), { ...b, op: undefined, wire: undefined });
  // Decoding works on a view that does not start at offset 0.
  const shifted = new Uint8Array(HEADER_BYTES + 3);
  shifted.set(encodeHeader(h), 3);
  assert.deepEqual(decodeHeader(shifted.subarray(3)), { ...h, root: undefined, wire: undefined });
});

test('malformed headers decode to undefined', () => {
  const good = encodeHeader(h);
  assert.equal(decodeHeader(good.subarray(1)), undefined, 'short');
  assert.equal(decodeHeader(new Uint8Array(HEADER_BYTES)), undefined, 'zeros');
  assert.equal(decodeHeader(new TextEncoder().encode('x'.repeat(HEADER_BYTES))), undefined, 'text');
  for (const [offset, value] of [
    [0, 0x00],
    [4, 9],
    [5, 9],
    [6, 9],
    [7, 3],
  ]) {
    const bad = good.slice();
    bad[offset] = value;
    assert.equal(decodeHeader(bad), undefined, `byte ${offset} = ${value}`);
  }
  const negative = good.slice();
  new DataView(negative.buffer).setFloat64(24, -1, true);
  assert.equal(decodeHeader(negative), undefined, 'negative count');
});

test('a different collective is a mismatch naming both', () => {
  const other: Header = { kind: 'broadcast', seq: 42, dtype: 'float32', count: 10, root: 0, step: 0, segment: 0 };
  assert.throws(
    () => checkHeader(h, other, 1, 0),
    (e: unknown) => {
      assert.ok(e instanceof CommError);
      assert.match(e.message, /rank 1 called #42 allReduce\(mean, float32\[2973184\]\) but rank 0 called #42 broadcast\(root 0, float32\[10\]\)/);
      return true;
    },
  );
  assert.throws(() => checkHeader(h, { ...h, count: 5 }, 1, 0), /float32\[2973184\].*float32\[5\]/);
  assert.throws(() => checkHeader(h, { ...h, seq: 43 }, 1, 0), /#42 .* #43/);
  assert.throws(() => checkHeader(h, { ...h, segment: 12 }, 1, 0), /protocol error/);
  checkHeader(h, { ...h }, 1, 0);
  assert.equal(describe({ kind: 'barrier', seq: 3, dtype: 'float32', count: 0 }), '#3 barrier()');
});
