/**
 * The compressed ring's per-hop codec work, JavaScript loops against the SIMD kernels
 * (worker/comm/simd_wire.ts), and the float32 ring's per-hop reduction as the anchor.
 *
 *   npm run bench:wire -- [--floats N] [--segment-bytes B] [--repeat R]
 *
 * On N float32 elements (default 1,486,593: one of 2 ranks' chunks of the default GPT's step
 * buffer, what one reduce-scatter hop carries), cut into the ring's segments (B bytes of float32
 * each, the ring's default 1 MiB), per segment:
 *   encode   float32 → wire bytes (a chain's first send)
 *   decode   wire bytes → float32 (the all-gather's receive)
 *   hop      decode + add the local float32 + encode (a reduce-scatter hop; fused for SIMD)
 *   hop f32  the float32 ring's hop: reducer.combine (wasm SIMD) of the received and local segments
 * Each kind runs JS then SIMD, bf16 then fp16, interleaved, R rounds; the table prints the median
 * ms per N floats and the rounds' spread (min–max), and the ratio JS / SIMD.
 */
import { formatError } from '../shared/errors.js';
import { hideBin, yargs } from '../shared/yargs.js';
import { createReducer } from '../worker/comm/reduce.js';
import { WireCodec, type WireFormat } from '../worker/comm/wire.js';

type Range = { lo: number; hi: number };

function segments(n: number, segmentBytes: number): Range[] {
  const per = Math.max(8, Math.floor(segmentBytes / 4));
  const out: Range[] = [];
  for (let lo = 0; lo < n; lo += per) out.push({ lo, hi: Math.min(n, lo + per) });
  return out;
}

/** Milliseconds of one call of `f`, best of 3 (one round's sample). */
function time(f: () => void): number {
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const t0 = process.hrtime.bigint();
    f();
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return best;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

function main(): void {
  const argv = yargs(hideBin(process.argv))
    .strict()
    .option('floats', { type: 'number', default: 1_486_593, describe: 'float32 elements per hop' })
    .option('segment-bytes', { type: 'number', default: 1 << 20, describe: "the ring's segment size (bytes of float32)" })
    .option('repeat', { type: 'number', default: 7, describe: 'rounds (interleaved JS, SIMD)' })
    .check((a) => {
      if (!Number.isSafeInteger(a.floats) || a.floats < 1) throw new Error(`--floats must be a whole number ≥ 1, got ${a.floats}`);
      if (!Number.isSafeInteger(a['segment-bytes']) || a['segment-bytes'] < 32)
        throw new Error(`--segment-bytes must be a whole number ≥ 32, got ${a['segment-bytes']}`);
      if (!Number.isSafeInteger(a.repeat) || a.repeat < 1) throw new Error(`--repeat must be a whole number ≥ 1, got ${a.repeat}`);
      return true;
    })
    .parseSync();
  const n = argv.floats;
  const segs = segments(n, argv['segment-bytes']);
  const reducer = createReducer('wasm');
  const local = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 1e-3);
  const received = Float32Array.from({ length: n }, (_, i) => Math.cos(i) * 1e-3);
  const f32msgs = segs.map((s) => received.slice(s.lo, s.hi));
  const f32dst = new Float32Array(n);
  const rows: { name: string; samples: number[] }[] = [];
  const row = (name: string): number[] => {
    let r = rows.find((x) => x.name === name);
    if (r === undefined) rows.push((r = { name, samples: [] }));
    return r.samples;
  };
  for (let round = 0; round < argv.repeat; round++) {
    row('hop f32 (reducer.combine)').push(
      time(() => {
        for (const [j, s] of segs.entries()) {
          const d = f32dst.subarray(s.lo, s.hi);
          d.set(f32msgs[j] as Float32Array);
          reducer.combine(d, local.subarray(s.lo, s.hi), 'sum');
        }
      }),
    );
    for (const format of ['bf16', 'fp16'] as WireFormat[]) {
      for (const simd of [false, true]) {
        const codec = new WireCodec(format, n, 0, simd);
        const label = `${format} ${simd ? 'SIMD' : 'JS'}`;
        const msgs = segs.map((s) => codec.encode(received.subarray(s.lo, s.hi), s));
        const dst = new Float32Array(n);
        row(`${label} encode`).push(time(() => segs.forEach((s) => codec.encode(local.subarray(s.lo, s.hi), s))));
        row(`${label} decode`).push(time(() => segs.forEach((s, j) => codec.decode(msgs[j] as Uint8Array, s, dst.subarray(s.lo, s.hi)))));
        row(`${label} hop (decode+add+encode)`).push(
          time(() => segs.forEach((s, j) => codec.addEncode(msgs[j] as Uint8Array, s, local.subarray(s.lo, s.hi), reducer, 'sum'))),
        );
      }
    }
  }
  const fmt = (x: number): string => x.toFixed(2);
  const lines = [
    `wire codec per hop: ${n.toLocaleString('en-US')} floats in ${segs.length} segments of ≤ ${argv['segment-bytes']} B float32, ${argv.repeat} rounds (ms per hop: median, min–max)`,
    '| work | median ms | spread ms | JS / SIMD |',
    '|---|---|---|---|',
  ];
  for (const r of rows) {
    const simdTwin = /^\w+ JS/.test(r.name) ? rows.find((x) => x.name === r.name.replace('JS', 'SIMD')) : undefined;
    const ratio = simdTwin === undefined ? '' : `${(median(r.samples) / median(simdTwin.samples)).toFixed(1)}×`;
    lines.push(`| ${r.name} | ${fmt(median(r.samples))} | ${fmt(Math.min(...r.samples))}–${fmt(Math.max(...r.samples))} | ${ratio} |`);
  }
  console.log(lines.join('\n'));
}

try {
  main();
} catch (e) {
  console.error(`bench:wire: ${formatError(e)}`);
  process.exitCode = 1;
}
