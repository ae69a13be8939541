import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createReducer, type CombineOp, type ReducerKind } from '../../../worker/comm/reduce.js';

function random(n: number, seed: number): number[] {
  let x = seed >>> 0 || 1;
  return Array.from({ length: n }, () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return ((x >>> 0) / 2 ** 32 - 0.5) * 100;
  });
}

const scalar: Record<CombineOp, (a: number, b: number) => number> = {
  sum: (a, b) => a + b,
  max: Math.max,
  min: Math.min,
};

for (const kind of ['wasm', 'js'] as ReducerKind[]) {
  const reducer = createReducer(kind);

  test(`${kind}: combine matches a scalar loop for every op, type and odd length`, () => {
    assert.equal(reducer.kind, kind);
    // Lengths around the 16-byte vector and the 256 KiB staging block boundaries.
    for (const n of [0, 1, 3, 5, 17, 65536 + 3, 3 * 32768 + 1]) {
      for (const Ctor of [Float32Array, Float64Array]) {
        for (const op of ['sum', 'max', 'min'] as CombineOp[]) {
          const a = Ctor.from(random(n, n + 1));
          const b = Ctor.from(random(n, n + 7));
          // Unaligned to 16 bytes: views that start one element in.
          const dst = new Ctor(n + 1).subarray(1);
          dst.set(a);
          reducer.combine(dst, b.slice(), op);
          const expected = Ctor.from(Array.from(a, (x, i) => scalar[op](x, b[i])));
          assert.deepEqual(dst, expected, `${kind} ${op} ${Ctor.name}[${n}]`);
        }
      }
    }
  });

  test(`${kind}: divide matches element / divisor rounded to the type`, () => {
    for (const Ctor of [Float32Array, Float64Array]) {
      const a = Ctor.from(random(1003, 5));
      const d = a.slice();
      reducer.divide(d, 3);
      assert.deepEqual(d, Ctor.from(Array.from(a, (x) => x / 3)));
    }
  });

  test(`${kind}: combine with a finish divides and copies the result in the same pass`, () => {
    // Across the 256 KiB staging blocks; copyTo either a separate array or src itself (as the ring does).
    for (const n of [0, 7, 65536 + 5]) {
      for (const Ctor of [Float32Array, Float64Array]) {
        for (const into of ['other', 'src'] as const) {
          const a = Ctor.from(random(n, n + 3));
          const b = Ctor.from(random(n, n + 9));
          const dst = a.slice();
          const src = b.slice();
          const copyTo = into === 'src' ? src : new Ctor(n);
          reducer.combine(dst, src, 'sum', { divideBy: 3, copyTo });
          // Rounded like the ring's unfused path: the sum rounded to the type, then divided.
          const sum = Ctor.from(Array.from(a, (x, i) => x + b[i]));
          const expected = Ctor.from(Array.from(sum, (x) => x / 3));
          assert.deepEqual(dst, expected, `${kind} ${Ctor.name}[${n}] dst`);
          assert.deepEqual(copyTo, expected, `${kind} ${Ctor.name}[${n}] copy into ${into}`);
        }
      }
    }
  });

  test(`${kind}: combine into other memory leaves dst as it was, with the same bits`, () => {
    // The ring writes a segment it forwards into memory of its own, not into the received message.
    for (const n of [0, 7, 65536 + 5]) {
      for (const Ctor of [Float32Array, Float64Array]) {
        for (const op of ['sum', 'max', 'min'] as CombineOp[]) {
          const a = Ctor.from(random(n, n + 5));
          const b = Ctor.from(random(n, n + 11));
          const inPlace = a.slice();
          reducer.combine(inPlace, b.slice(), op, { divideBy: 2 });
          const dst = a.slice();
          const into = new Ctor(n);
          const copyTo = b.slice();
          reducer.combine(dst, copyTo, op, { divideBy: 2, copyTo, into });
          assert.deepEqual(dst, a, `${kind} ${Ctor.name}[${n}] ${op}: dst unchanged`);
          assert.deepEqual(into, inPlace, `${kind} ${Ctor.name}[${n}] ${op}: into holds the result`);
          assert.deepEqual(copyTo, inPlace, `${kind} ${Ctor.name}[${n}] ${op}: copyTo (src) holds it too`);
        }
      }
    }
  });

  test(`${kind}: NaN propagates through max and min`, () => {
    for (const op of ['max', 'min'] as CombineOp[]) {
      const d = new Float32Array([1, NaN, 3, 4, 5]);
      reducer.combine(d, new Float32Array([NaN, 2, 3, 4, 5]), op);
      assert.ok(Number.isNaN(d[0]) && Number.isNaN(d[1]), `${op}: ${Array.from(d)}`);
    }
  });
}
