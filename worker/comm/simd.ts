/**
 * Element-wise kernels as a WebAssembly SIMD module, assembled here from opcodes (no toolchain,
 * no binary blob). The ring's add was half its time in plain JavaScript (COMM-NOTES.md); a
 * 128-bit SIMD loop runs several times faster, even counting the copies in and out of the
 * module's memory (measured by scripts/bench_allreduce.ts --kernels).
 *
 * Exports, all on byte addresses in the module's memory, `nbytes` a multiple of the element size:
 *   {add,max,min}_{f32,f64}(dst, a, b, nbytes)   dst[i] = op(a[i], b[i])
 *   div_{f32,f64}(dst, a, nbytes, divisor: f64)    dst[i] = a[i] / divisor
 *   scale_f32(dst, a, nbytes, factor: f64) -> f32  dst[i] = f32(f64(a[i]) * factor), JavaScript's
 *       `f32array[i] *= factor` bit for bit (the product in float64, rounded once); returns 0 when
 *       every result is finite, NaN otherwise (the sum of every (r - r))
 *   nonfinite_f32(a, nbytes) -> f32               0 when every a[i] is finite, else NaN (as scale_f32's)
 * Each runs a vector loop over 16-byte lanes, then a scalar loop over the tail. Loads and stores
 * are unaligned-safe (align hint 0), so any byte address works.
 */

/** Unsigned LEB128. */
export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

/** Signed LEB128 (for i32.const). */
export function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

export const OP = {
  block: 0x02,
  loop: 0x03,
  end: 0x0b,
  br: 0x0c,
  brIf: 0x0d,
  localGet: 0x20,
  localSet: 0x21,
  i32Const: 0x41,
  i32GeU: 0x4f,
  i32Add: 0x6a,
  i32And: 0x71,
  f32Load: 0x2a,
  f64Load: 0x2b,
  f32Store: 0x38,
  f64Store: 0x39,
  f32DemoteF64: 0xb6,
  f64PromoteF32: 0xbb,
  f32Add: 0x92,
  f32Sub: 0x93,
  f64Mul: 0xa2,
  simd: 0xfd,
} as const;
export const VOID = 0x40;
export const I32 = 0x7f;
export const F32T = 0x7d;
export const F64 = 0x7c;
export const V128 = 0x7b;

/** SIMD sub-opcodes (after 0xfd) and scalar opcodes per element type. */
interface Lane {
  readonly size: 4 | 8;
  readonly load: number;
  readonly store: number;
  readonly splat: number;
  readonly vec: Record<'add' | 'max' | 'min' | 'div', number>;
  readonly scalar: Record<'add' | 'max' | 'min' | 'div', number>;
}
const F32: Lane = {
  size: 4,
  load: OP.f32Load,
  store: OP.f32Store,
  splat: 0x13,
  vec: { add: 0xe4, div: 0xe7, min: 0xe8, max: 0xe9 },
  scalar: { add: 0x92, div: 0x95, min: 0x96, max: 0x97 },
};
const F64L: Lane = {
  size: 8,
  load: OP.f64Load,
  store: OP.f64Store,
  splat: 0x14,
  vec: { add: 0xf0, div: 0xf3, min: 0xf4, max: 0xf5 },
  scalar: { add: 0xa0, div: 0xa3, min: 0xa4, max: 0xa5 },
};

export const memarg = (align: number): number[] => [align, 0];
export const get = (i: number): number[] => [OP.localGet, i];
export const set = (i: number): number[] => [OP.localSet, i];
export const addr = (base: number, i: number): number[] => [...get(base), ...get(i), OP.i32Add];

/**
 * `for (i = 0; i < end; i += step) body` with the loop variable in local `i`;
 * `end` in local `endLocal`. Leaves `i` at the first index not processed.
 */
export function forLoop(i: number, endLocal: number, step: number, body: number[]): number[] {
  return [
    OP.block,
    VOID,
    OP.loop,
    VOID,
    ...get(i),
    ...get(endLocal),
    OP.i32GeU,
    OP.brIf,
    1,
    ...body,
    ...get(i),
    OP.i32Const,
    ...sleb(step),
    OP.i32Add,
    ...set(i),
    OP.br,
    0,
    OP.end,
    OP.end,
  ];
}

/**
 * Every kernel's loop over its bytes: `vec` per 16-byte lane while i < nbytes rounded down to 16
 * (kept in local `vend`), then `scalar` per element of `size` bytes up to nbytes; `tail` after.
 */
function elementLoops(nbytes: number, i: number, vend: number, vec: number[], scalar: number[], size: number, tail: number[] = []): number[] {
  return [
    ...get(nbytes),
    OP.i32Const,
    ...sleb(-16),
    OP.i32And,
    ...set(vend),
    ...forLoop(i, vend, 16, vec),
    ...forLoop(i, nbytes, size, scalar),
    ...tail,
    OP.end,
  ];
}

/** acc (v128 local) += r - r (r: a v128 local): lanes stay 0 while r is finite, turn NaN after an inf or NaN. */
function flagNonFiniteVec(acc: number, r: number): number[] {
  return [...get(acc), ...get(r), ...get(r), OP.simd, ...uleb(0xe5), OP.simd, ...uleb(0xe4), ...set(acc)]; // f32x4.sub, f32x4.add
}

/** The same for one f32: t += x - x. */
function flagNonFinite(t: number, x: number): number[] {
  return [...get(t), ...get(x), ...get(x), OP.f32Sub, OP.f32Add, ...set(t)];
}

/** The flag as the result: t + acc's four lanes (0, or NaN when any value was not finite). */
function flagResult(acc: number, t: number): number[] {
  const lane = (k: number): number[] => [...get(acc), OP.simd, 0x1f, k, OP.f32Add]; // f32x4.extract_lane
  return [...get(t), ...lane(0), ...lane(1), ...lane(2), ...lane(3)];
}

/** Binary op body. Locals: 0 dst, 1 a, 2 b, 3 nbytes, 4 i, 5 vend. */
function binaryBody(lane: Lane, op: 'add' | 'max' | 'min'): number[] {
  const vec = [
    ...addr(0, 4),
    ...addr(1, 4),
    OP.simd,
    0x00,
    ...memarg(0),
    ...addr(2, 4),
    OP.simd,
    0x00,
    ...memarg(0),
    OP.simd,
    ...uleb(lane.vec[op]),
    OP.simd,
    0x0b,
    ...memarg(0),
  ];
  const scalar = [...addr(0, 4), ...addr(1, 4), lane.load, ...memarg(0), ...addr(2, 4), lane.load, ...memarg(0), lane.scalar[op], lane.store, ...memarg(0)];
  return elementLoops(3, 4, 5, vec, scalar, lane.size);
}

/** Division by a scalar. Params: 0 dst, 1 a, 2 nbytes, 3 divisor (f64). Locals: 4 i, 5 vend. */
function divBody(lane: Lane): number[] {
  const divisor = lane.size === 4 ? [...get(3), OP.f32DemoteF64] : get(3);
  const vec = [
    ...addr(0, 4),
    ...addr(1, 4),
    OP.simd,
    0x00,
    ...memarg(0),
    ...divisor,
    OP.simd,
    lane.splat,
    OP.simd,
    ...uleb(lane.vec.div),
    OP.simd,
    0x0b,
    ...memarg(0),
  ];
  const scalar = [...addr(0, 4), ...addr(1, 4), lane.load, ...memarg(0), ...divisor, lane.scalar.div, lane.store, ...memarg(0)];
  return elementLoops(2, 4, 5, vec, scalar, lane.size);
}

/**
 * scale_f32. Params: 0 dst, 1 a, 2 nbytes, 3 factor (f64). Locals: 4 i, 5 vend (i32), 6 acc,
 * 7 r (v128), 8 s, 9 t (f32). Per 4 floats: two 8-byte loads, each widened to f64x2, multiplied,
 * narrowed back, the halves joined by one shuffle; acc += r - r (0, or NaN for an inf or NaN).
 */
function scaleBody(): number[] {
  const half = (offset: number): number[] => [
    ...addr(1, 4),
    OP.simd,
    0x5d, // v128.load64_zero
    0,
    offset,
    OP.simd,
    0x5f, // f64x2.promote_low_f32x4
    ...get(3),
    OP.simd,
    0x14, // f64x2.splat
    OP.simd,
    ...uleb(0xf2), // f64x2.mul
    OP.simd,
    0x5e, // f32x4.demote_f64x2_zero
  ];
  const vec = [
    ...half(0),
    ...half(8),
    OP.simd,
    0x0d, // i8x16.shuffle: lanes 0-1 of the first, 0-1 of the second
    ...[0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23],
    ...set(7),
    ...addr(0, 4),
    ...get(7),
    OP.simd,
    0x0b, // v128.store
    ...memarg(0),
    ...flagNonFiniteVec(6, 7),
  ];
  const scalar = [
    ...addr(1, 4),
    OP.f32Load,
    ...memarg(0),
    OP.f64PromoteF32,
    ...get(3),
    OP.f64Mul,
    OP.f32DemoteF64,
    ...set(8),
    ...addr(0, 4),
    ...get(8),
    OP.f32Store,
    ...memarg(0),
    ...flagNonFinite(9, 8),
  ];
  return elementLoops(2, 4, 5, vec, scalar, 4, flagResult(6, 9));
}

/**
 * nonfinite_f32. Params: 0 a, 1 nbytes. Locals: 2 i, 3 vend (i32), 4 acc (v128), 5 x (f32),
 * 6 v (v128), 7 t (f32).
 * acc += x - x over 4 floats at a time (0 for a finite x, NaN otherwise); returns the lanes' sum.
 */
function nonFiniteBody(): number[] {
  const vec = [...addr(0, 2), OP.simd, 0x00, ...memarg(0), ...set(6), ...flagNonFiniteVec(4, 6)]; // v128.load
  const scalar = [...addr(0, 2), OP.f32Load, ...memarg(0), ...set(5), ...flagNonFinite(7, 5)];
  return elementLoops(1, 2, 3, vec, scalar, 4, flagResult(4, 7));
}

export function section(id: number, payload: number[]): number[] {
  return [id, ...uleb(payload.length), ...payload];
}
export function vector(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}
export function name(s: string): number[] {
  const bytes = [...new TextEncoder().encode(s)];
  return [...uleb(bytes.length), ...bytes];
}

export const KERNEL_NAMES = ['add_f32', 'max_f32', 'min_f32', 'add_f64', 'max_f64', 'min_f64', 'div_f32', 'div_f64', 'scale_f32', 'nonfinite_f32'] as const;
export type KernelName = (typeof KERNEL_NAMES)[number];

/** The module's bytes: imports memory `env.memory`, exports the kernels named above. */
export function kernelModuleBytes(): Uint8Array {
  const binaryType = [0x60, ...vector([[I32], [I32], [I32], [I32]]), 0x00];
  const divType = [0x60, ...vector([[I32], [I32], [I32], [F64]]), 0x00];
  const scaleType = [0x60, ...vector([[I32], [I32], [I32], [F64]]), ...vector([[F32T]])];
  const checkType = [0x60, ...vector([[I32], [I32]]), ...vector([[F32T]])];
  const bodies: { name: KernelName; type: number; code: number[]; locals?: number[] }[] = [];
  for (const [suffix, lane] of [
    ['f32', F32],
    ['f64', F64L],
  ] as const) {
    for (const op of ['add', 'max', 'min'] as const) {
      bodies.push({ name: `${op}_${suffix}`, type: 0, code: binaryBody(lane, op) });
    }
  }
  bodies.push({ name: 'div_f32', type: 1, code: divBody(F32) });
  bodies.push({ name: 'div_f64', type: 1, code: divBody(F64L) });
  bodies.push({
    name: 'scale_f32',
    type: 2,
    code: scaleBody(),
    locals: vector([
      [2, I32],
      [2, V128],
      [2, F32T],
    ]),
  });
  // Locals after the 2 params: 2 i, 3 vend, 4 acc, 5 x (f32), 6 v (v128), 7 t (f32).
  bodies.push({
    name: 'nonfinite_f32',
    type: 3,
    code: nonFiniteBody(),
    locals: vector([
      [2, I32],
      [1, V128],
      [1, F32T],
      [1, V128],
      [1, F32T],
    ]),
  });
  // Keep the export order equal to KERNEL_NAMES (the function index is the position).
  bodies.sort((x, y) => KERNEL_NAMES.indexOf(x.name) - KERNEL_NAMES.indexOf(y.name));
  const locals = vector([[2, I32]]); // two i32 locals: i, vend
  const bytes = [
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...section(1, vector([binaryType, divType, scaleType, checkType])),
    ...section(2, vector([[...name('env'), ...name('memory'), 0x02, 0x00, 0x01]])), // memory, min 1 page
    ...section(3, vector(bodies.map((b) => [b.type]))),
    ...section(7, vector(bodies.map((b, i) => [...name(b.name), 0x00, ...uleb(i)]))),
    ...section(
      10,
      vector(
        bodies.map((b) => {
          const body = [...(b.locals ?? locals), ...b.code];
          return [...uleb(body.length), ...body];
        }),
      ),
    ),
  ];
  return Uint8Array.from(bytes);
}
