/**
 * 16-bit wire codec kernels (bf16 and fp16) as WebAssembly SIMD (assembled here from opcodes, as
 * simd.ts): the compressed ring's per-hop work — decode the received 16-bit values, add the local
 * float32 values, round the sums back to 16 bits — in one pass over each block, 8 elements per
 * iteration, instead of three JavaScript loops (bench: scripts/bench_wire.ts).
 *
 * Bit for bit what wire.ts's JavaScript codec and the wasm reducer (reduce.ts) give:
 *   add      f32x4.add(decoded, local), the reducer's add in the same operand order
 *   divide   f32x4.div by the divisor demoted to float32, the reducer's divide (for `mean`)
 *   bf16 decode   u = h << 16 (exact)
 *   bf16 encode   NaN (f32x4.ne(x, x)): (u >>> 16) | 0x40, a quiet NaN keeping the sign and the
 *                 top payload bits; else (u + 0x7fff + ((u >>> 16) & 1)) >>> 16, round to nearest
 *                 even (a carry out of the mantissa bumps the exponent: the largest finite values
 *                 become infinity); i32 lanes wrap as JavaScript's >>> does.
 *   fp16 decode   normal halves: |h| << 13 with the exponent re-biased (+112); subnormal halves
 *                 (and zero): (|h| << 13) + (113 << 23) is 2^-14 · (1 + m/1024) as float32, minus
 *                 2^-14 leaves m · 2^-24 exactly, with no subnormal float32 operand (those cost
 *                 ~100 cycles each on x86); exponent 31: |h| << 13 with float32's all-ones
 *                 exponent (infinity, NaN keeping its payload); then the sign.
 *   fp16 encode   of a = |u|: NaN 0x7e00 | ((a >>> 13) & 0x3ff); from 0x477ff000 (65520) on
 *                 0x7c00; normal halves (a ≥ 2^-14) round 13 mantissa bits off, to nearest even,
 *                 after re-biasing; below, a + 0.5 in float32 rounds a to a multiple of 2^-24,
 *                 to nearest even, whose count is that sum's bits minus 0.5's (subnormal halves,
 *                 and zero from 2^-25 down); then the sign. The cases of wire.ts f32BitsToF16.
 * Kernels per format F (byte addresses in the module's memory, `n` elements, a multiple of 8; the
 * class pads the last block and drops the padding's results):
 *   enc_F(out16, src32, -, n)             dec_F(out32, in16, -, n)
 *   addenc_F(out16, in16, local32, n)     out16 = enc(dec(in16) + local32)
 *   addenc_wb_F(out16, in16, local32, n)  the same, and local32 = dec(out16)
 *   addenc_div_wb_F(out16, in16, local32, n, divisor)   enc((dec(in16) + local32) / divisor), local32 = dec(out16)
 */
import { addr, get, I32, F64, memarg, name, OP, section, set, sleb, uleb, vector, VOID } from './simd.js';

const V128 = 0x7b;
/** SIMD sub-opcodes (after 0xfd). */
const S = {
  load: 0x00,
  store: 0x0b,
  i32x4Splat: 0x11,
  f32x4Splat: 0x13,
  vconst: 0x0c,
  i32x4LtS: 0x39,
  i32x4GtS: 0x3b,
  i32x4GeS: 0x3f,
  f32x4Ne: 0x42,
  and: 0x4e,
  or: 0x50,
  bitselect: 0x52,
  narrowU: 0x86, // i16x8.narrow_i32x4_u
  extendLowU: 0xa9, // i32x4.extend_low_i16x8_u
  extendHighU: 0xaa,
  shl: 0xab,
  shrU: 0xad,
  i32x4Add: 0xae,
  i32x4Sub: 0xb1,
  f32x4Add: 0xe4,
  f32x4Sub: 0xe5,
  f32x4Div: 0xe7,
} as const;
const simd = (op: number): number[] => [OP.simd, ...uleb(op)];
const I32_SHL = 0x74;

// Locals: params 0 p0, 1 p1, 2 p2, 3 n, 4 divisor (f64); 5 j (16-bit byte offset), 6 k (float32
// byte offset), 7 end (= 2n); v128: 8 lo, 9 hi, 10 t, 11 splat 0x7fff, 12 splat 1, 13 splat 0x40,
// 14 divisor, 15 a, 16 x (fp16's scratch).
const [J, K, END, LO, HI, T, C7FFF, C1, C40, DIV, A, X] = [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
const LOCALS = vector([
  [3, I32],
  [9, V128],
]);
const c16 = [OP.i32Const, 16];
const c13 = [OP.i32Const, 13];
/** v128.const with the same 32-bit value in every lane. */
const k32 = (v: number): number[] => [...simd(S.vconst), ...Array.from({ length: 4 }, () => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24]).flat()];

export type Format = 'bf16' | 'fp16';

/** fp16: the 16-bit values (in i32 lanes) of the float32 lanes of local `t`. */
function encodeF16(t: number): number[] {
  const abs = [...get(t), ...k32(0x7fffffff), ...simd(S.and), ...set(A)];
  const nan = [...get(A), ...c13, ...simd(S.shrU), ...k32(0x3ff), ...simd(S.and), ...k32(0x7e00), ...simd(S.or)];
  const r = [...get(A), ...k32(0x38000000), ...simd(S.i32x4Sub), ...set(X)];
  const normal = [
    ...get(X),
    ...k32(0xfff),
    ...simd(S.i32x4Add),
    ...get(X),
    ...c13,
    ...simd(S.shrU),
    ...k32(1),
    ...simd(S.and),
    ...simd(S.i32x4Add),
    ...c13,
    ...simd(S.shrU),
  ];
  const small = [...get(A), ...k32(0x3f000000), ...simd(S.f32x4Add), ...k32(0x3f000000), ...simd(S.i32x4Sub)];
  const below = (limit: number, op: number): number[] => [...get(A), ...k32(limit), ...simd(op)];
  const finite = [...small, ...normal, ...below(0x38800000, S.i32x4LtS), ...simd(S.bitselect)];
  const capped = [...k32(0x7c00), ...finite, ...below(0x477ff000, S.i32x4GeS), ...simd(S.bitselect)];
  const all = [...nan, ...capped, ...below(0x7f800000, S.i32x4GtS), ...simd(S.bitselect)];
  return [...abs, ...r, ...all, ...get(t), ...c16, ...simd(S.shrU), ...k32(0x8000), ...simd(S.and), ...simd(S.or)];
}

/** fp16: float32 lanes of the low (or high) four 16-bit values of local `t`. */
function widenF16(t: number, high: boolean): number[] {
  const h = [...get(t), ...simd(high ? S.extendHighU : S.extendLowU), ...set(X)];
  const em = [...get(X), ...k32(0x7fff), ...simd(S.and), ...set(A)];
  const shifted = [...get(A), ...c13, ...simd(S.shl)];
  const special = [...shifted, ...k32(0x7f800000), ...simd(S.or)];
  const normal = [...shifted, ...k32(112 << 23), ...simd(S.i32x4Add)];
  const subnormal = [...shifted, ...k32(113 << 23), ...simd(S.i32x4Add), ...k32(113 << 23), ...simd(S.f32x4Sub)];
  const finite = [...subnormal, ...normal, ...get(A), ...k32(0x400), ...simd(S.i32x4LtS), ...simd(S.bitselect)];
  const value = [...special, ...finite, ...get(A), ...k32(0x7bff), ...simd(S.i32x4GtS), ...simd(S.bitselect)];
  return [...h, ...em, ...value, ...get(X), ...k32(0x8000), ...simd(S.and), ...c16, ...simd(S.shl), ...simd(S.or)];
}

/** bf16: the 16-bit values (in i32 lanes) of the float32 lanes of local `t`. */
function encodeBf16(t: number): number[] {
  const nan = [...get(t), ...c16, ...simd(S.shrU), ...get(C40), ...simd(S.or)];
  const lsb = [...get(t), ...c16, ...simd(S.shrU), ...get(C1), ...simd(S.and)];
  const rounded = [...get(t), ...get(C7FFF), ...simd(S.i32x4Add), ...lsb, ...simd(S.i32x4Add), ...c16, ...simd(S.shrU)];
  const isNan = [...get(t), ...get(t), ...simd(S.f32x4Ne)];
  return [...nan, ...rounded, ...isNan, ...simd(S.bitselect)];
}

/** bf16: float32 lanes of the low (or high) four 16-bit values of local `t`. */
const widenBf16 = (t: number, high: boolean): number[] => [...get(t), ...simd(high ? S.extendHighU : S.extendLowU), ...c16, ...simd(S.shl)];
const load = (base: number, off: number, at = 0): number[] => [...addr(base, off), ...simd(S.load), ...memarg(0).slice(0, 1), ...uleb(at)];
const store = (base: number, off: number, at: number, value: number[]): number[] => [...addr(base, off), ...value, ...simd(S.store), 0, ...uleb(at)];

type Kind = 'enc' | 'dec' | 'addenc' | 'addenc_wb' | 'addenc_div_wb';
const KINDS: readonly Kind[] = ['enc', 'dec', 'addenc', 'addenc_wb', 'addenc_div_wb'];
const FORMATS: readonly Format[] = ['bf16', 'fp16'];
/** Export names, in function index order. */
export const WIRE_KERNELS: readonly string[] = FORMATS.flatMap((f) => KINDS.map((k) => `${k}_${f}`));

function body(kind: Kind, format: Format): number[] {
  const encode = format === 'bf16' ? encodeBf16 : encodeF16;
  const widen = format === 'bf16' ? widenBf16 : widenF16;
  let step: number[];
  if (kind === 'enc') {
    step = [...load(1, K), ...set(T), ...encode(T), ...set(LO), ...load(1, K, 16), ...set(T), ...encode(T), ...set(HI)];
    step.push(...store(0, J, 0, [...get(LO), ...get(HI), ...simd(S.narrowU)]));
  } else if (kind === 'dec') {
    step = [...load(1, J), ...set(T), ...store(0, K, 0, widen(T, false)), ...store(0, K, 16, widen(T, true))];
  } else {
    const div = kind === 'addenc_div_wb' ? [...get(DIV), ...simd(S.f32x4Div)] : [];
    step = [...load(1, J), ...set(T)];
    step.push(...widen(T, false), ...load(2, K), ...simd(S.f32x4Add), ...div, ...set(LO));
    step.push(...widen(T, true), ...load(2, K, 16), ...simd(S.f32x4Add), ...div, ...set(HI));
    step.push(...get(LO), ...set(T), ...encode(T), ...set(LO), ...get(HI), ...set(T), ...encode(T), ...set(HI));
    if (kind !== 'addenc') {
      // The decoded result: the lanes' 16-bit values packed again and widened (bf16: just << 16).
      step.push(...get(LO), ...get(HI), ...simd(S.narrowU), ...set(T));
      step.push(...store(2, K, 0, widen(T, false)), ...store(2, K, 16, widen(T, true)));
    }
    step.push(...store(0, J, 0, [...get(LO), ...get(HI), ...simd(S.narrowU)]));
  }
  const splat = (v: number, local: number): number[] => [OP.i32Const, ...sleb(v), ...simd(S.i32x4Splat), ...set(local)];
  return [
    ...[...get(3), OP.i32Const, 1, I32_SHL, ...set(END)],
    ...[...splat(0x7fff, C7FFF), ...splat(1, C1), ...splat(0x40, C40)],
    ...[...get(4), OP.f32DemoteF64, ...simd(S.f32x4Splat), ...set(DIV)],
    // for (j = 0, k = 0; j < end; j += 16, k += 32) step
    ...[OP.block, VOID, OP.loop, VOID, ...get(J), ...get(END), OP.i32GeU, OP.brIf, 1],
    ...step,
    ...[...get(J), OP.i32Const, 16, OP.i32Add, ...set(J), ...get(K), OP.i32Const, 32, OP.i32Add, ...set(K), OP.br, 0, OP.end, OP.end],
    OP.end,
  ];
}

/** The module's bytes: imports memory `env.memory`, exports WIRE_KERNELS in that order. */
export function wireModuleBytes(): Uint8Array {
  const type = [0x60, ...vector([[I32], [I32], [I32], [I32], [F64]]), 0x00];
  const codes = FORMATS.flatMap((f) =>
    KINDS.map((k) => {
      const b = [...LOCALS, ...body(k, f)];
      return [...uleb(b.length), ...b];
    }),
  );
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vector([type])),
    ...section(2, vector([[...name('env'), ...name('memory'), 0x02, 0x00, 0x01]])),
    ...section(3, vector(WIRE_KERNELS.map(() => [0]))),
    ...section(7, vector(WIRE_KERNELS.map((k, i) => [...name(k), 0x00, ...uleb(i)]))),
    ...section(10, vector(codes)),
  ]);
}

// The tsconfig's libs (ES2022, node) do not declare WebAssembly; the part used here:
declare const WebAssembly: {
  Memory: new (descriptor: { initial: number }) => { readonly buffer: ArrayBuffer };
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: Record<string, unknown> };
};

type Kernel = (p0: number, p1: number, p2: number, n: number, divisor: number) => void;

/** Elements per staging block: 16-bit in, float32, 16-bit out = 8 bytes each, 256 KiB in all (L2). */
const BLOCK = 32768;
const IN16 = 0;
const F32 = 2 * BLOCK;
const OUT16 = 6 * BLOCK;

const pad8 = (n: number): number => (n + 7) & ~7;
const bytesOf = (a: Float32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

interface Instance {
  readonly mem: Uint8Array;
  readonly exports: Record<string, unknown>;
}

/**
 * One format's codec on byte views: 16-bit values as Uint8Array (any offset, 2 bytes per element),
 * float32 values as Float32Array. Each call stages its operands block by block through the
 * module's memory (copies in and out, as reduce.ts does).
 */
export class Wire16Simd {
  private readonly mem: Uint8Array;
  private readonly fns: Record<Kind, Kernel>;

  constructor(
    readonly format: Format,
    instance: Instance,
  ) {
    this.mem = instance.mem;
    this.fns = Object.fromEntries(KINDS.map((k) => [k, instance.exports[`${k}_${format}`]])) as Record<Kind, Kernel>;
  }

  /** out (2 * src.length bytes) = src rounded to the format. */
  encode(src: Float32Array, out: Uint8Array): void {
    const s = bytesOf(src);
    for (let off = 0; off < src.length; off += BLOCK) {
      const m = Math.min(BLOCK, src.length - off);
      this.mem.set(s.subarray(4 * off, 4 * (off + m)), F32);
      this.fns.enc(OUT16, F32, 0, pad8(m), 1);
      out.set(this.mem.subarray(OUT16, OUT16 + 2 * m), 2 * off);
    }
  }

  /** dst = the 16-bit values of `wire` (2 * dst.length bytes). */
  decode(wire: Uint8Array, dst: Float32Array): void {
    const d = bytesOf(dst);
    for (let off = 0; off < dst.length; off += BLOCK) {
      const m = Math.min(BLOCK, dst.length - off);
      this.mem.set(wire.subarray(2 * off, 2 * (off + m)), IN16);
      this.fns.dec(F32, IN16, 0, pad8(m), 1);
      d.set(this.mem.subarray(F32, F32 + 4 * m), 4 * off);
    }
  }

  /**
   * out = enc(dec(wire) + local), or enc((dec(wire) + local) / divideBy) with `divideBy`; with
   * `writeBack` (or `divideBy`), local = dec(out) too. `wire` and `out` hold 2 * local.length bytes.
   */
  addEncode(wire: Uint8Array, local: Float32Array, out: Uint8Array, writeBack: boolean, divideBy?: number): void {
    const l = bytesOf(local);
    const kernel = divideBy !== undefined ? this.fns.addenc_div_wb : writeBack ? this.fns.addenc_wb : this.fns.addenc;
    const back = writeBack || divideBy !== undefined;
    for (let off = 0; off < local.length; off += BLOCK) {
      const m = Math.min(BLOCK, local.length - off);
      this.mem.set(wire.subarray(2 * off, 2 * (off + m)), IN16);
      this.mem.set(l.subarray(4 * off, 4 * (off + m)), F32);
      kernel(OUT16, IN16, F32, pad8(m), divideBy ?? 1);
      out.set(this.mem.subarray(OUT16, OUT16 + 2 * m), 2 * off);
      if (back) l.set(this.mem.subarray(F32, F32 + 4 * m), 4 * off);
    }
  }
}

let shared: Instance | null | undefined;
const views = new Map<Format, Wire16Simd>();
/**
 * The format's codec; one module instance per process (calls are synchronous, so its memory is
 * never used by two at once); null without WebAssembly SIMD.
 */
export function wireSimd(format: Format): Wire16Simd | null {
  if (shared === undefined) {
    try {
      const memory = new WebAssembly.Memory({ initial: (8 * BLOCK) / 65536 });
      const instance = new WebAssembly.Instance(new WebAssembly.Module(wireModuleBytes()), { env: { memory } });
      shared = { mem: new Uint8Array(memory.buffer), exports: instance.exports };
    } catch {
      shared = null;
    }
  }
  if (shared === null) return null;
  let view = views.get(format);
  if (view === undefined) views.set(format, (view = new Wire16Simd(format, shared)));
  return view;
}
