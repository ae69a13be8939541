/**
 * Half-width wire formats for compressed all-reduces (`--grad-compression`, PyTorch DDP's
 * bf16_compress_hook / fp16_compress_hook): a float32 buffer crosses the wire as 16-bit values,
 * 2 bytes per element instead of 4, and is summed in float32 (ring_compressed.ts).
 *
 *   bf16  float32's sign and 8-bit exponent, 7 mantissa bits: float32's range, ~3 significant
 *         digits. Encoding keeps the top 16 bits, rounded to nearest, ties to even.
 *   fp16  IEEE half: 5-bit exponent, 10 mantissa bits, largest finite 65504, subnormals down to
 *         2^-24. Rounded to nearest, ties to even; beyond 65504 (from 65520 on) it is infinity,
 *         below 2^-25 zero (as PyTorch's .half()).
 * NaN stays NaN (quiet), infinities stay infinite, so a bad gradient is still seen after the sum.
 * Decoding is exact (every 16-bit value is a float32).
 * The loops below are the reference; where WebAssembly SIMD compiles, encode, decode and the ring
 * hop's decode + add + encode (addEncode) run as SIMD kernels with the same bits (simd_wire.ts).
 *
 * A codec may keep an exact tail: the buffer's last `exactTail` elements travel as float32 (the
 * step buffer's loss, which must not lose digits). A segment [lo, hi) of the buffer is then
 * 2 bytes for each element below `count - exactTail` and 4 for each from there on, in that order.
 */
import { CommError } from '../../shared/errors.js';
import type { Range } from './chunks.js';
import { wireSimd, type Wire16Simd } from './simd_wire.js';

/**
 * The part of reduce.ts's Reducer a ring hop uses, by shape (importing reduce.ts here would close
 * the loop reduce.ts → process_group.ts → wire.ts).
 */
interface HopReducer {
  readonly kind: string;
  combine(dst: Float32Array, src: Float32Array, op: 'sum' | 'max' | 'min'): void;
  divide(dst: Float32Array, divisor: number): void;
}

export type WireFormat = 'bf16' | 'fp16';
export const WIRE_FORMATS: readonly WireFormat[] = ['bf16', 'fp16'];

/** How a float32 buffer crosses the wire in one compressed collective. */
export interface Compression {
  readonly format: WireFormat;
  /** The buffer's last elements sent as float32 (default 0). */
  readonly exactTail?: number;
}

/** Float32 bits → bfloat16 bits, round to nearest even; NaN stays a (quiet) NaN. */
export function f32BitsToBf16(u: number): number {
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  // A carry out of the mantissa bumps the exponent: the largest values round up to infinity.
  return ((u >>> 0) + 0x7fff + ((u >>> 16) & 1)) >>> 16;
}

/** Float32 bits → IEEE half bits, round to nearest even (overflow to infinity, subnormals kept). */
export function f32BitsToF16(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const a = u & 0x7fffffff;
  if (a >= 0x7f800000) return sign | (a > 0x7f800000 ? 0x7e00 | ((a >>> 13) & 0x3ff) : 0x7c00);
  if (a >= 0x477ff000) return sign | 0x7c00; // 65520 and up: past 65504's half-way point
  if (a >= 0x38800000) {
    // Normal in half: re-bias the exponent (127 - 15 = 112), round off 13 mantissa bits.
    const r = a - 0x38000000;
    return sign | ((r + 0xfff + ((r >>> 13) & 1)) >>> 13);
  }
  if (a <= 0x33000000) return sign; // at most 2^-25: rounds to (signed) zero
  // Subnormal in half: the value in units of 2^-24 is the 24-bit significand shifted right.
  const e = a >>> 23;
  const m = (a & 0x7fffff) | 0x800000;
  const shift = 126 - e;
  const q = m >>> shift;
  const rem = m & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return sign | (q + (rem > half || (rem === half && (q & 1) === 1) ? 1 : 0));
}

/** IEEE half bits → float32 bits (exact). */
export function f16BitsToF32(h: number): number {
  const sign = (h & 0x8000) << 16;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return (sign | 0x7f800000 | (m << 13)) >>> 0;
  if (e !== 0) return (sign | ((e + 112) << 23) | (m << 13)) >>> 0;
  if (m === 0) return sign >>> 0;
  // Subnormal: normalise the mantissa.
  let k = 0;
  let mm = m;
  while ((mm & 0x400) === 0) {
    mm <<= 1;
    k++;
  }
  return (sign | ((113 - k) << 23) | ((mm & 0x3ff) << 13)) >>> 0;
}

let halfTable: Uint32Array | undefined;
/** All 65536 half values as float32 bits (256 KiB, built once). */
function f16Table(): Uint32Array {
  if (halfTable === undefined) {
    halfTable = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = f16BitsToF32(h);
  }
  return halfTable;
}

/** `x` rounded to `format` and back: the float32 value the wire carries for it. */
export function roundTo(format: WireFormat, x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0] as number;
  const back = format === 'bf16' ? f32BitsToBf16(u) << 16 : f16BitsToF32(f32BitsToF16(u));
  return new Float32Array(new Uint32Array([back >>> 0]).buffer)[0] as number;
}

/** Encodes and decodes segments of one float32 buffer of `count` elements. */
export class WireCodec {
  /** First element sent at full width. */
  readonly split: number;
  /** The format's SIMD kernels (simd_wire.ts), or null: no WebAssembly SIMD, or `simd` false. */
  private readonly simd: Wire16Simd | null;
  private scratch = new Float32Array(0);

  /** `simd` false keeps every loop in JavaScript (the reference the SIMD kernels are tested and benchmarked against). */
  constructor(
    readonly format: WireFormat,
    readonly count: number,
    exactTail = 0,
    simd = true,
  ) {
    this.split = Math.max(0, count - exactTail);
    this.simd = simd ? wireSimd(format) : null;
  }

  private halfCount(r: Range): number {
    return Math.max(0, Math.min(r.hi, this.split) - r.lo);
  }

  /** Bytes on the wire for elements [lo, hi). */
  bytes(r: Range): number {
    const half = Math.max(0, Math.min(r.hi, this.split) - r.lo);
    return 2 * half + 4 * (r.hi - r.lo - half);
  }

  /**
   * The wire bytes of `src` (elements [r.lo, r.hi) of the buffer, hi - lo floats), in `into`
   * (bytes(r) long, e.g. the transport's memory) or a new array.
   */
  encode(src: Float32Array, r: Range, into?: Uint8Array): Uint8Array {
    const out = this.outFor(r, into);
    const halfCount = this.halfCount(r);
    if (this.simd !== null) {
      this.simd.encode(src.subarray(0, halfCount), out);
      if (halfCount < src.length) out.set(new Uint8Array(src.buffer, src.byteOffset + 4 * halfCount, 4 * (src.length - halfCount)), 2 * halfCount);
      return out;
    }
    // 16-bit stores need an even offset: encode into a copy where `into` has an odd one.
    const even = out.byteOffset % 2 === 0 ? out : new Uint8Array(out.length);
    const h = new Uint16Array(even.buffer, even.byteOffset, halfCount);
    if (this.format === 'bf16') {
      const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
      for (let i = 0; i < halfCount; i++) {
        const u = bits[i] as number;
        h[i] = (u & 0x7fffffff) > 0x7f800000 ? (u >>> 16) | 0x40 : (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
      }
    } else {
      const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
      for (let i = 0; i < halfCount; i++) h[i] = f32BitsToF16(bits[i] as number);
    }
    if (halfCount < src.length) even.set(new Uint8Array(src.buffer, src.byteOffset + 4 * halfCount, 4 * (src.length - halfCount)), 2 * halfCount);
    if (even !== out) out.set(even);
    return out;
  }

  private outFor(r: Range, into: Uint8Array | undefined): Uint8Array {
    const bytes = this.bytes(r);
    if (into === undefined) return new Uint8Array(bytes);
    if (into.length !== bytes) throw new CommError(`wire encode into ${into.length} bytes, needs ${bytes}`);
    return into;
  }

  /** Decode wire bytes of elements [r.lo, r.hi) into `dst` (hi - lo floats). */
  decode(payload: Uint8Array, r: Range, dst: Float32Array): void {
    const halfCount = this.halfCount(r);
    if (this.simd !== null) {
      this.simd.decode(payload.subarray(0, 2 * halfCount), dst.subarray(0, halfCount));
      if (halfCount < dst.length) new Uint8Array(dst.buffer, dst.byteOffset + 4 * halfCount, 4 * (dst.length - halfCount)).set(payload.subarray(2 * halfCount));
      return;
    }
    // Received payloads may sit at any offset: read 16-bit values through an aligned copy if needed.
    const aligned = payload.byteOffset % 4 === 0 ? payload : payload.slice();
    const h = new Uint16Array(aligned.buffer, aligned.byteOffset, halfCount);
    const out = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
    if (this.format === 'bf16') {
      for (let i = 0; i < halfCount; i++) out[i] = (h[i] as number) << 16;
    } else {
      const table = f16Table();
      for (let i = 0; i < halfCount; i++) out[i] = table[h[i] as number] as number;
    }
    if (halfCount < dst.length) {
      new Uint8Array(dst.buffer, dst.byteOffset + 4 * halfCount, 4 * (dst.length - halfCount)).set(aligned.subarray(2 * halfCount));
    }
  }

  /**
   * One hop of the compressed ring on elements [r.lo, r.hi): the wire bytes of
   * op(decode(payload), local), combined in float32 by `reducer` (the decoded value first). With
   * `finish` (the chunk's owner), the result is first divided by `finish.divideBy` when given, and
   * `local` receives the value the returned bytes carry; without, `local` is left as it was.
   * Bit for bit the sequence decode, reducer.combine, reducer.divide, encode (, decode); for sums
   * under the wasm reducer it runs as one SIMD pass (simd_wire.ts). The bytes go into `into`
   * (bytes(r) long) when given, else into a new array.
   */
  addEncode(
    payload: Uint8Array,
    r: Range,
    local: Float32Array,
    reducer: HopReducer,
    op: 'sum' | 'max' | 'min',
    finish?: { readonly divideBy?: number },
    into?: Uint8Array,
  ): Uint8Array {
    const divideBy = finish?.divideBy;
    if (this.simd === null || op !== 'sum' || reducer.kind !== 'wasm') {
      if (this.scratch.length < local.length) this.scratch = new Float32Array(local.length);
      const sum = this.scratch.subarray(0, local.length);
      this.decode(payload, r, sum);
      reducer.combine(sum, local, op);
      if (divideBy !== undefined) reducer.divide(sum, divideBy);
      const wire = this.encode(sum, r, into);
      if (finish !== undefined) this.decode(wire, r, local);
      return wire;
    }
    const halfCount = this.halfCount(r);
    const out = this.outFor(r, into);
    this.simd.addEncode(payload.subarray(0, 2 * halfCount), local.subarray(0, halfCount), out, finish !== undefined, divideBy);
    if (halfCount < local.length) {
      // The exact tail, summed as the reducer sums float32.
      const tail = new Float32Array(local.length - halfCount);
      new Uint8Array(tail.buffer).set(payload.subarray(2 * halfCount, 2 * halfCount + 4 * tail.length));
      reducer.combine(tail, local.subarray(halfCount), op);
      if (divideBy !== undefined) reducer.divide(tail, divideBy);
      out.set(new Uint8Array(tail.buffer), 2 * halfCount);
      if (finish !== undefined) local.set(tail, halfCount);
    }
    return out;
  }
}

/** The codec of collective `op` on `buf` with `c`; a CommError when they do not fit together. */
export function codecFor(op: string, buf: Float32Array | Float64Array, c: Compression): WireCodec {
  if (!(buf instanceof Float32Array)) throw new CommError(`${op} with ${String(c.format)} compression needs a Float32Array, got ${buf.constructor.name}`);
  if (!WIRE_FORMATS.includes(c.format)) throw new CommError(`${op} compression must be ${WIRE_FORMATS.join(' or ')}, got ${String(c.format)}`);
  const tail = c.exactTail ?? 0;
  if (!Number.isSafeInteger(tail) || tail < 0) throw new CommError(`${op} exactTail must be a whole number of elements, got ${String(tail)}`);
  return new WireCodec(c.format, buf.length, tail);
}
