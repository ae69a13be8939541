/**
 * The ring's message header: every data message is two frames, [header, payload], and the header
 * says which collective it belongs to (sequence number, kind, element type, length, op or root)
 * and where in it (ring step, segment). A receiver compares each header with what it expects, so
 * a rank that calls a different collective than its left neighbour fails with both named.
 *
 * Header layout (32 bytes, little-endian):
 *   0 u32 magic 'RDS1' | 4 u8 kind | 5 u8 dtype | 6 u8 op | 7 u8 wire (0: dtype itself; 1 bf16, 2 fp16: wire.ts)
 *   8 u32 seq | 12 u32 step | 16 u32 segment | 20 u32 root | 24 f64 count (elements)
 */
import { CommError } from '../../shared/errors.js';
import { REDUCE_OPS, type NumericArray, type ReduceOp } from './process_group.js';
import { WIRE_FORMATS, type WireFormat } from './wire.js';

export type CollectiveKind = 'allReduce' | 'broadcast' | 'allGather' | 'barrier' | 'reduceScatter' | 'allGatherChunks';
export type DType = 'float32' | 'float64' | 'int32' | 'uint8';

/** What every rank of one collective must agree on. */
export interface Signature {
  readonly kind: CollectiveKind;
  readonly seq: number;
  readonly dtype: DType;
  /** Elements of the caller's buffer. */
  readonly count: number;
  /** allReduce and reduceScatter only. */
  readonly op?: ReduceOp | undefined;
  /** broadcast only. */
  readonly root?: number | undefined;
  /** A compressed allReduce or reduceScatter: the 16-bit format its messages carry (wire.ts). */
  readonly wire?: WireFormat | undefined;
}

/** A data message's header: its collective and its place in it. */
export interface Header extends Signature {
  readonly step: number;
  readonly segment: number;
}

export const HEADER_BYTES = 32;
const MAGIC = 0x31534452; // 'RDS1' read as little-endian u32
const KINDS: readonly CollectiveKind[] = ['allReduce', 'broadcast', 'allGather', 'barrier', 'reduceScatter', 'allGatherChunks'];
const DTYPES: readonly DType[] = ['float32', 'float64', 'int32', 'uint8'];
const NONE = 0xff;
const NO_ROOT = 0xffffffff;

export function dtypeOf(buf: NumericArray): DType {
  if (buf instanceof Float32Array) return 'float32';
  if (buf instanceof Float64Array) return 'float64';
  if (buf instanceof Int32Array) return 'int32';
  return 'uint8';
}

export function encodeHeader(h: Header): Uint8Array {
  const bytes = new Uint8Array(HEADER_BYTES);
  const v = new DataView(bytes.buffer);
  v.setUint32(0, MAGIC, true);
  v.setUint8(4, KINDS.indexOf(h.kind));
  v.setUint8(5, DTYPES.indexOf(h.dtype));
  v.setUint8(6, h.op === undefined ? NONE : REDUCE_OPS.indexOf(h.op));
  v.setUint8(7, h.wire === undefined ? 0 : 1 + WIRE_FORMATS.indexOf(h.wire));
  v.setUint32(8, h.seq, true);
  v.setUint32(12, h.step, true);
  v.setUint32(16, h.segment, true);
  v.setUint32(20, h.root ?? NO_ROOT, true);
  v.setFloat64(24, h.count, true);
  return bytes;
}

/** The header in `bytes`, or undefined when they are not one (wrong size, magic or field). */
export function decodeHeader(bytes: Uint8Array): Header | undefined {
  if (bytes.byteLength !== HEADER_BYTES) return undefined;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const kind = KINDS[v.getUint8(4)];
  const dtype = DTYPES[v.getUint8(5)];
  const opCode = v.getUint8(6);
  const op = opCode === NONE ? undefined : REDUCE_OPS[opCode];
  const rootCode = v.getUint32(20, true);
  const count = v.getFloat64(24, true);
  if (v.getUint32(0, true) !== MAGIC || kind === undefined || dtype === undefined) return undefined;
  const wireCode = v.getUint8(7);
  if ((opCode !== NONE && op === undefined) || wireCode > WIRE_FORMATS.length) return undefined;
  if (!Number.isSafeInteger(count) || count < 0) return undefined;
  return {
    kind,
    dtype,
    op,
    seq: v.getUint32(8, true),
    step: v.getUint32(12, true),
    segment: v.getUint32(16, true),
    root: rootCode === NO_ROOT ? undefined : rootCode,
    count,
    wire: wireCode === 0 ? undefined : WIRE_FORMATS[wireCode - 1],
  };
}

/** "#7 allReduce(sum, float32[1000])" — how errors name a collective. */
export function describe(s: Signature): string {
  const args: string[] = [];
  if (s.op !== undefined) args.push(s.op);
  if (s.root !== undefined) args.push(`root ${s.root}`);
  if (s.kind !== 'barrier') args.push(`${s.dtype}[${s.count}]${s.wire === undefined ? '' : ` as ${s.wire}`}`);
  return `#${s.seq} ${s.kind}(${args.join(', ')})`;
}

function sameSignature(a: Signature, b: Signature): boolean {
  return a.kind === b.kind && a.seq === b.seq && a.dtype === b.dtype && a.count === b.count && a.op === b.op && a.root === b.root && a.wire === b.wire;
}

/**
 * Throws a CommError unless `got` (from rank `from`) is the message `expected` at rank `self`.
 * A different collective names both; the same collective out of place is a protocol error.
 */
export function checkHeader(expected: Header, got: Header, self: number, from: number): void {
  if (!sameSignature(expected, got)) {
    throw new CommError(
      `collective mismatch: rank ${self} called ${describe(expected)} but rank ${from} called ${describe(got)}`,
      'every rank must call the same collectives, with the same lengths, in the same order',
    );
  }
  if (expected.step !== got.step || expected.segment !== got.segment) {
    throw new CommError(
      `ring protocol error in ${describe(expected)}: rank ${self} expected step ${expected.step} segment ` +
        `${expected.segment} from rank ${from}, got step ${got.step} segment ${got.segment}`,
      'ranks of one run must use the same segment size and the same rosedist version',
    );
  }
}
