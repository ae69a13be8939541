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

  test(`${kind}: scale is JavaScript's float64 product rounded once, bit for bit, and finds the first non-finite value`, () => {
    // Random float32 bit patterns: every exponent, subnormals, both signs (no NaN or inf here).
    const bits = new Uint32Array(65536 + 7);
    let x = 12345;
    for (let i = 0; i < bits.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      const b = x >>> 0;
      bits[i] = (b & 0x7f800000) === 0x7f800000 ? b & 0xbfffffff : b;
    }
    const patterns = new Float32Array(bits.buffer);
    for (const factor of [1 / 2, 1 / 3, 1 / 7, 3]) {
      for (const n of [0, 1, 3, 5, 17, 65536 + 7]) {
        const a = patterns.subarray(0, n);
        const d = new Float32Array(n + 1).subarray(1); // not 16-byte aligned
        d.set(a);
        const bad = reducer.scale(d, factor);
        const expected = Float32Array.from(a, (v) => v * factor);
        assert.deepEqual(new Uint32Array(d.slice().buffer), new Uint32Array(expected.buffer), `${kind} x${factor} [${n}]`);
        assert.equal(
          bad,
          expected.findIndex((v) => !Number.isFinite(v)),
          `${kind} x${factor} [${n}]: first non-finite`,
        );
      }
    }
    // A non-finite value in the second 256 KiB block (and a later one) is found by its index.
    for (const special of [Infinity, -Infinity, NaN]) {
      const d = Float32Array.from(random(3 * 65536 + 5, 11));
      d[65536 + 9] = special;
      d[2 * 65536] = NaN;
      assert.equal(reducer.scale(d, 1 / 2), 65536 + 9, `${kind} ${special}`);
    }
    assert.equal(reducer.scale(Float32Array.from(random(1001, 3)), 1 / 3), -1);
  });

  test(`${kind}: firstNonFinite finds the first NaN or infinity in any staging block and leaves the array as it is`, () => {
    const a = Float32Array.from(random(3 * 65536 + 5, 13));
    a[7] = -0; // finite
    assert.equal(reducer.firstNonFinite(a), -1);
    for (const [at, special] of [
      [3 * 65536 + 4, NaN],
      [2 * 65536 + 1, -Infinity],
      [65536, Infinity],
      [3, NaN],
    ] as const) {
      a[at] = special;
      const before = a.slice();
      assert.equal(reducer.firstNonFinite(a), at, `${kind} ${special} at ${at}`);
      assert.deepEqual(new Uint32Array(a.slice().buffer), new Uint32Array(before.buffer));
    }
    assert.equal(reducer.firstNonFinite(new Float32Array(0)), -1);
  });

  test(`${kind}: NaN propagates through max and min`, () => {
    for (const op of ['max', 'min'] as CombineOp[]) {
      const d = new Float32Array([1, NaN, 3, 4, 5]);
      reducer.combine(d, new Float32Array([NaN, 2, 3, 4, 5]), op);
      assert.ok(Number.isNaN(d[0]) && Number.isNaN(d[1]), `${op}: ${Array.from(d)}`);
    }
  });
}
