/**
 * The ceiling of 128-bit WebAssembly SIMD arithmetic on this core, in the same process as the
 * products that bench:kernels times: a loop of independent f32x4 multiply-adds on registers only
 * (no memory, nothing to wait for but the FP ports), GFLOP/s of this process's CPU time. A GEMM
 * cannot beat it; its GFLOP/s over this figure is how close it runs to the core.
 *
 *   fma:   acc_i = x · y + acc_i as f32x4.relaxed_madd (one vfmadd231ps on x86 with FMA3), 10 chains;
 *   plain: acc_i = acc_i · y + x as f32x4.mul then f32x4.add (the plain build's pair), 12 chains.
 * Each chain depends on itself only, so the ports, not the latency, bound it (FMA: 4 cycles of
 * latency, 2 per cycle: 8+ chains keep both ports busy); more chains than registers would spill.
 * Assembled here from opcodes (worker/comm/simd.ts's helpers), as the comm kernels are.
 */
import { setFlagsFromString } from 'node:v8';
import { F32T, forLoop, get, I32, OP, section, set, uleb, V128, vector, name } from '../worker/comm/simd.js';

declare const WebAssembly: {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: Record<string, unknown> };
};

export type PeakKind = 'fma' | 'plain';
const CHAINS: Record<PeakKind, number> = { fma: 10, plain: 12 };

/** peak(n: i32) -> f32: n iterations of one multiply-add per chain; returns a lane so nothing is dead. */
function peakModule(kind: PeakKind): Uint8Array {
  const chains = CHAINS[kind];
  // Locals: 0 n (param), 1 i (i32), 2 x, 3 y, 4.. accumulators (v128).
  const [n, i, x, y, acc0] = [0, 1, 2, 3, 4];
  const splat = (v: number): number[] => [0x43, ...f32Bytes(v), OP.simd, 0x13]; // f32.const v, f32x4.splat
  const step: number[] = [];
  for (let c = 0; c < chains; c++) {
    step.push(
      ...(kind === 'fma'
        ? [...get(x), ...get(y), ...get(acc0 + c), OP.simd, ...uleb(0x105)] // f32x4.relaxed_madd(x, y, acc) = x·y + acc
        : [...get(acc0 + c), ...get(y), OP.simd, ...uleb(0xe6), ...get(x), OP.simd, ...uleb(0xe4)]), // f32x4.mul, f32x4.add
      ...set(acc0 + c),
    );
  }
  const init = [...splat(1.0001), ...set(x), ...splat(0.9999), ...set(y)];
  for (let c = 0; c < chains; c++) init.push(...splat(c), ...set(acc0 + c));
  const sum: number[] = [...get(acc0)];
  for (let c = 1; c < chains; c++) sum.push(...get(acc0 + c), OP.simd, ...uleb(0xe4));
  const body = [
    ...vector([
      [1, I32],
      [2 + chains, V128],
    ]),
    ...init,
    ...forLoop(i, n, 1, step),
    ...sum,
    OP.simd,
    0x1f, // f32x4.extract_lane 0
    0,
    OP.end,
  ];
  const type = [0x60, ...vector([[I32]]), ...vector([[F32T]])];
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vector([type])),
    ...section(3, vector([[0]])),
    ...section(7, vector([[...name('peak'), 0x00, 0]])),
    ...section(10, vector([[...uleb(body.length), ...body]])),
  ]);
}

function f32Bytes(v: number): number[] {
  return [...new Uint8Array(Float32Array.of(v).buffer)];
}

/** This process's CPU time in ms: on a shared machine, time spent waiting for a core is not counted (bench_gemm.ts times with it too). */
export function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** GFLOP/s of `kind`'s loop: the best of `rounds` runs of ≥ minMs CPU time each; a string when the runtime refuses the module. */
export function wasmPeak(kind: PeakKind, rounds = 5, minMs = 50): number | string {
  const bytes = peakModule(kind);
  if (!WebAssembly.validate(bytes)) setFlagsFromString('--experimental-wasm-relaxed-simd');
  if (!WebAssembly.validate(bytes)) return `this runtime refuses ${kind === 'fma' ? 'relaxed SIMD' : 'SIMD'}`;
  const peak = new WebAssembly.Instance(new WebAssembly.Module(bytes), {}).exports.peak as (n: number) => number;
  let iters = 1 << 16;
  peak(iters);
  let best = 0;
  for (let r = 0; r < rounds; r++) {
    for (;;) {
      const t = cpuMs();
      peak(iters);
      const ms = cpuMs() - t;
      if (ms >= minMs) {
        best = Math.max(best, (iters * CHAINS[kind] * 8) / (ms * 1e6)); // 4 lanes × (multiply + add) per chain
        break;
      }
      iters *= 2;
    }
  }
  return best;
}
