/**
 * Half-width wire formats (worker/comm/wire.ts) against an independent reference (the nearest
 * value of the format's grid, ties to even, computed with float64 arithmetic), and the compressed
 * ring (ring_compressed.ts) over in-memory groups: same bits on every rank, the documented
 * rounding points, the exact tail, reduce-scatter = all-reduce's shard.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createMemoryGroups } from '../../../worker/comm/memory_group.js';
import { shardRange } from '../../../worker/comm/chunks.js';
import { f16BitsToF32, f32BitsToBf16, f32BitsToF16, roundTo, WireCodec, type WireFormat } from '../../../worker/comm/wire.js';
import { createReducer } from '../../../worker/comm/reduce.js';
import { wireSimd } from '../../../worker/comm/simd_wire.js';

const f32 = (bits: number): number => new Float32Array(new Uint32Array([bits >>> 0]).buffer)[0] as number;
const bitsOf = (x: number): number => new Uint32Array(new Float32Array([x]).buffer)[0] as number;

/** Nearest value with `mant` mantissa bits and minimum normal exponent `emin`, ties to even; max finite `maxFinite`. */
function reference(x: number, mant: number, emin: number, maxFinite: number): number {
  if (Number.isNaN(x) || !Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  const e = Math.max(Math.floor(Math.log2(a)), emin);
  let ulp = 2 ** (e - mant);
  if (a / ulp >= 2 ** (mant + 1)) ulp *= 2; // log2 rounding at a power of two
  const q = a / ulp;
  const fl = Math.floor(q);
  const r = q - fl > 0.5 || (q - fl === 0.5 && fl % 2 === 1) ? fl + 1 : fl;
  const v = r * ulp;
  // Past the largest finite value by half an ulp of the top binade: infinity.
  const out = v > maxFinite ? Infinity : v;
  return x < 0 ? -out : out;
}

function randomBits(n: number, seed: number): Uint32Array {
  let s = seed >>> 0;
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s;
  }
  return out;
}

describe('wire formats', () => {
  it('bf16 and fp16 round to nearest even over random float32 bit patterns and edge values', () => {
    const edges = [
      0,
      1,
      65504,
      65519.99,
      65520,
      65536,
      2 ** -14,
      2 ** -24,
      2 ** -25,
      1.5 * 2 ** -25,
      3 * 2 ** -26,
      1 + 2 ** -8,
      1 + 3 * 2 ** -8,
      1 + 2 ** -11,
      3.4e38,
      1e-40,
    ];
    const values = [...edges, ...edges.map((x) => -x), ...Array.from(randomBits(200_000, 7), f32)].map((x) => f32(bitsOf(x)));
    let checked = 0;
    for (const x of values) {
      if (Number.isNaN(x)) {
        assert.ok(Number.isNaN(roundTo('bf16', x)) && Number.isNaN(roundTo('fp16', x)));
        continue;
      }
      const bf = reference(x, 7, -126, 3.3895313892515355e38);
      const h = reference(x, 10, -14, 65504);
      assert.equal(Object.is(roundTo('bf16', x), bf) || roundTo('bf16', x) === bf, true, `bf16(${x}) = ${roundTo('bf16', x)}, want ${bf}`);
      assert.equal(roundTo('fp16', x) === h || Object.is(roundTo('fp16', x), h), true, `fp16(${x}) = ${roundTo('fp16', x)}, want ${h}`);
      checked++;
    }
    assert.ok(checked > 190_000);
    assert.equal(f32BitsToBf16(bitsOf(-Infinity)), 0xff80);
    assert.equal(f32BitsToF16(bitsOf(Infinity)), 0x7c00);
    for (let h = 0; h < 0x7c00; h++) assert.equal(f32BitsToF16(f16BitsToF32(h)), h, `half ${h} round trip`);
  });

  it("the codec's inlined encoders give the bits of f32BitsToBf16 and f32BitsToF16", () => {
    const bits = randomBits(100_000, 3);
    const src = new Float32Array(bits.buffer);
    for (const [format, one] of [
      ['bf16', f32BitsToBf16],
      ['fp16', f32BitsToF16],
    ] as const) {
      const wire = new Uint16Array(new WireCodec(format, src.length).encode(src, { lo: 0, hi: src.length }).buffer);
      for (let i = 0; i < bits.length; i++) assert.equal(wire[i], one(bits[i] as number), `${format} of bits ${bits[i]}`);
    }
  });

  it('a codec with an exact tail sends the tail at float32 and the rest at 2 bytes', () => {
    const codec = new WireCodec('bf16', 10, 1);
    assert.equal(codec.bytes({ lo: 0, hi: 10 }), 9 * 2 + 4);
    assert.equal(codec.bytes({ lo: 5, hi: 9 }), 8);
    const src = Float32Array.from({ length: 10 }, (_, i) => 1 / 3 + i);
    const out = new Float32Array(10);
    codec.decode(codec.encode(src, { lo: 0, hi: 10 }), { lo: 0, hi: 10 }, out);
    for (let i = 0; i < 9; i++) assert.equal(out[i], roundTo('bf16', src[i] as number));
    assert.equal(out[9], src[9], 'the tail keeps every bit');
  });
});

const sameBytes = (a: ArrayBufferView, b: ArrayBufferView, what: string): void => {
  const x = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  const y = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  if (x.equals(y)) return;
  let i = 0;
  while (x[i] === y[i]) i++;
  assert.fail(`${what}: first differing byte ${i} (${x[i]} vs ${y[i]}) of ${x.length}`);
};

describe('SIMD codecs (simd_wire.ts) against the JavaScript codecs', () => {
  const edges = [0, 1, 65504, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 3.4e38, 3.3961776e38, 1e-40, Infinity, NaN].flatMap((x) => [x, -x]).map(bitsOf);
  // NaNs with every kind of payload (signalling, quiet, near the top), the largest finite values (round up to infinity).
  const specials = [0x7f800001, 0x7fbfffff, 0x7fc00000, 0x7fffffff, 0xff800001, 0xffffffff, 0x7f7fffff, 0x7f7f8000, 0x7f7f7fff, 0xff7fffff];
  // fp16's boundaries, each with its neighbours: 65520 (overflow), 2^-14 (smallest normal), 2^-24, 2^-25 (ties to zero), 3·2^-26.
  const halfEdges = [0x477ff000, 0x38800000, 0x33800000, 0x33000000, 0x33400000].flatMap((b) => [b - 1, b, b + 1, (b | 0x80000000) >>> 0]);
  // Float32 values in fp16's range (exponents 2^-26 .. 2^16), where its rounding cases are.
  const inHalfRange = Array.from(randomBits(100_000, 9), (b) => ((b & 0x807fffff) | ((0x65 + (b % 43)) << 23)) >>> 0);
  const patterns = Uint32Array.from([...edges, ...specials, ...halfEdges, ...inHalfRange, ...randomBits(200_000, 7)]);

  it('runs here (WebAssembly SIMD compiles)', () => {
    assert.notEqual(wireSimd('bf16'), null);
    assert.notEqual(wireSimd('fp16'), null);
  });

  it('fp16: every one of the 65536 halves decodes to the bits of the JavaScript table', () => {
    const all = new Uint8Array(Uint16Array.from({ length: 65536 }, (_, h) => h).buffer);
    const r = { lo: 0, hi: 65536 };
    const outJs = new Float32Array(65536);
    const outSimd = new Float32Array(65536);
    new WireCodec('fp16', 65536, 0, false).decode(all, r, outJs);
    new WireCodec('fp16', 65536).decode(all, r, outSimd);
    sameBytes(outSimd, outJs, 'fp16 decode of every half');
  });

  for (const format of ['bf16', 'fp16'] as const) {
    it(`${format}: encode and decode give the JavaScript codec bits over 300k bit patterns (200k random, 100k in fp16's range), edges and NaN payloads, at odd lengths and offsets`, () => {
      for (const [lo, hi] of [
        [0, patterns.length],
        [3, 3 + 7],
        [5, 5 + 32768 + 9],
        [1, 2],
      ] as const) {
        const src = new Float32Array(patterns.buffer, 4 * lo, hi - lo);
        const r = { lo: 0, hi: hi - lo };
        const js = new WireCodec(format, hi - lo, 0, false).encode(src, r);
        const simd = new WireCodec(format, hi - lo).encode(src, r);
        sameBytes(simd, js, `encode of [${lo}, ${hi})`);
        // A payload at an odd byte offset, as a received message may be.
        const shifted = new Uint8Array(js.length + 1).fill(0xa5);
        shifted.set(js, 1);
        const outJs = new Float32Array(hi - lo);
        const outSimd = new Float32Array(hi - lo).fill(7);
        new WireCodec(format, hi - lo, 0, false).decode(shifted.subarray(1), r, outJs);
        new WireCodec(format, hi - lo).decode(shifted.subarray(1), r, outSimd);
        sameBytes(outSimd, outJs, `decode of [${lo}, ${hi})`);
      }
    });

    it(`${format}: the fused hop (decode, add, divide, encode, write back) gives the bits of decode, reducer.combine, reducer.divide, encode`, () => {
      const reducer = createReducer('wasm');
      const n = 70_001; // more than two staging blocks and a partial vector
      const wireBits = randomBits(n, 21);
      const payload = new Uint8Array(2 * n + 4 + 1);
      // Half of the payload: 16-bit patterns of every kind (incl. NaN, infinity); the exact tail: a float32.
      payload.set(new Uint8Array(Uint16Array.from(wireBits, (b) => b >>> 16).buffer), 1);
      payload.set(new Uint8Array(Float32Array.from([1 / 3]).buffer), 1 + 2 * n);
      const msg = payload.subarray(1); // odd offset
      // Local values: any bit pattern, values near fp16's top (sums past 65520), small ones near its subnormals.
      const mixed = Float32Array.from(randomBits(n + 1, 22), (b, i) =>
        i % 4 === 0 ? f32(b) : i % 4 === 1 ? ((b % 20001) - 10000) / 777 : i % 4 === 2 ? ((b % 20001) - 10000) * 6.5 : ((b % 20001) - 10000) * 2 ** -30,
      );
      for (const [tail, finish] of [
        [0, undefined],
        [1, undefined],
        [0, {}],
        [1, { divideBy: 3 }],
        [0, { divideBy: 2 }],
      ] as const) {
        const count = n + tail;
        const r = { lo: 0, hi: count };
        const body = msg.subarray(0, 2 * n + 4 * tail);
        const localJs = mixed.slice(0, count);
        const localSimd = mixed.slice(0, count);
        const js = new WireCodec(format, count, tail, false).addEncode(body, r, localJs, reducer, 'sum', finish);
        const simd = new WireCodec(format, count, tail).addEncode(body, r, localSimd, reducer, 'sum', finish);
        const what = `tail ${tail}, finish ${JSON.stringify(finish)}`;
        sameBytes(simd, js, `wire bytes, ${what}`);
        sameBytes(localSimd, localJs, `local after, ${what}`);
        if (finish === undefined) sameBytes(localSimd, mixed.subarray(0, count), `local unchanged, ${what}`);
      }
    });
  }
});

/** What the compressed ring computes for chunk owner `owner`, in the documented order. */
function ringReference(format: WireFormat, inputs: Float32Array[], i: number, owner: number, mean: boolean): number {
  const n = inputs.length;
  // Chunk c is started by rank c + 1 and travels right, ending at its owner c.
  let wire = roundTo(format, inputs[(owner + 1) % n][i] as number);
  let sum = 0;
  for (let k = 2; k <= n; k++) {
    sum = Math.fround(wire + (inputs[(owner + k) % n][i] as number));
    if (k < n) wire = roundTo(format, sum);
  }
  return roundTo(format, mean ? Math.fround(sum / n) : sum);
}

describe('compressed all-reduce (in-memory ranks)', () => {
  for (const [format, n, count, algorithm, recycle] of [
    ['bf16', 3, 10_001, 'ring', false],
    ['fp16', 4, 30_001, 'ring', false],
    ['bf16', 3, 101, 'gather', false],
    // The transport's memory for the encodings, reused (poisoned with NaN) once allowed.
    ['bf16', 3, 10_001, 'ring', true],
    ['fp16', 2, 30_001, 'ring', true],
  ] as const) {
    it(`${format}, ${n} ranks, ${count} floats (${algorithm}${recycle ? ', sent memory reused' : ''}): every rank the same bits, rounded where documented, close to the float64 sum`, async () => {
      const inputs = Array.from({ length: n }, (_, r) => Float32Array.from(randomBits(count, 11 + r), (b) => ((b % 20001) - 10000) / 7777));
      const groups = createMemoryGroups(n, { segmentBytes: 4096, collectiveTimeoutMs: 5000, recycle, maxDelayMs: recycle ? 2 : 0, seed: n });
      const bufs = inputs.map((x) => x.slice());
      const scattered = inputs.map((x) => x.slice());
      // A third collective, which runs in memory the first one sent from (reused where recycled).
      const again = inputs.map((x) => x.slice());
      try {
        await Promise.all(groups.map((g, r) => g.allReduce(bufs[r], 'mean', { format })));
        await Promise.all(groups.map((g, r) => g.reduceScatter(scattered[r], 'mean', { format })));
        await Promise.all(groups.map((g, r) => g.allReduce(again[r], 'mean', { format })));
      } finally {
        await Promise.all(groups.map((g) => g.close()));
      }
      for (let r = 1; r < n; r++) assert.deepEqual(Buffer.from(bufs[r].buffer), Buffer.from(bufs[0].buffer), `rank ${r} differs from rank 0`);
      for (let r = 0; r < n; r++) assert.deepEqual(Buffer.from(again[r].buffer), Buffer.from(bufs[0].buffer), `rank ${r}'s second all-reduce differs`);
      assert.equal(groups[0].allReduceAlgorithm(count * 4), algorithm);
      const tol = format === 'bf16' ? 2 ** -6 : 2 ** -9;
      for (let i = 0; i < count; i++) {
        const exact = inputs.reduce((s, x) => s + (x[i] as number), 0) / n;
        assert.ok(Math.abs((bufs[0][i] as number) - exact) <= tol * Math.max(1, Math.abs(exact)), `element ${i}: ${bufs[0][i]} vs ${exact}`);
        assert.equal(bufs[0][i], roundTo(format, bufs[0][i] as number), 'every result is a 16-bit value');
      }
      if (algorithm === 'ring') {
        for (let owner = 0; owner < n; owner++) {
          const { lo, hi } = shardRange(count, n, owner);
          for (let i = lo; i < hi; i += 97) assert.equal(bufs[0][i], ringReference(format, inputs, i, owner, true), `element ${i} of chunk ${owner}`);
        }
      }
      for (let r = 0; r < n; r++) {
        const { lo, hi } = shardRange(count, n, r);
        assert.deepEqual(scattered[r].subarray(lo, hi), bufs[0].subarray(lo, hi), `rank ${r}'s reduce-scatter shard = the all-reduce's`);
        assert.deepEqual(scattered[r].subarray(0, lo), inputs[r].subarray(0, lo), 'the rest of the buffer is left as it was');
      }
    });
  }

  it('keeps the exact tail at float32 and fails with both named when ranks disagree on the format', async () => {
    const groups = createMemoryGroups(2, { collectiveTimeoutMs: 5000, allReduceAlgorithm: 'ring' });
    try {
      const bufs = [Float32Array.from([1, 2, 1 / 3]), Float32Array.from([1, 2, 1 / 7])];
      await Promise.all(groups.map((g, r) => g.allReduce(bufs[r], 'sum', { format: 'bf16', exactTail: 1 })));
      assert.equal(bufs[0][2], Math.fround(Math.fround(1 / 3) + Math.fround(1 / 7)));
      assert.deepEqual(bufs[0], bufs[1]);
      const results = await Promise.allSettled([
        groups[0].allReduce(new Float32Array(8), 'sum', { format: 'bf16' }),
        groups[1].allReduce(new Float32Array(8), 'sum'),
      ]);
      const messages = results.map((r) => (r.status === 'rejected' ? String(r.reason.message) : 'resolved'));
      assert.ok(
        messages.some((m) => /collective mismatch: .*float32\[8\] as bf16.*float32\[8\]\)|collective mismatch: .*float32\[8\]\).*as bf16/.test(m)),
        messages.join(' | '),
      );
    } finally {
      await Promise.all(groups.map((g) => g.close()));
    }
  });
});
