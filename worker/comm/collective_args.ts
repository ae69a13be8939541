/**
 * The checks of a collective's arguments (ring_group.ts), before anything is sent: a wrong array
 * type, reduce op or window throws a CommError naming the collective and what it got.
 */
import { CommError } from '../../shared/errors.js';
import type { BufferWindow } from './chunks.js';
import { REDUCE_OPS, type FloatArray, type ReduceOp } from './process_group.js';

function typeName(x: unknown): string {
  return (x as { constructor?: { name?: string } } | null)?.constructor?.name ?? typeof x;
}

export function checkFloat(op: string, buf: unknown): void {
  if (!(buf instanceof Float32Array || buf instanceof Float64Array)) {
    throw new CommError(`${op} needs a Float32Array or Float64Array, got ${typeName(buf)}`);
  }
}

export function checkWindow(buf: FloatArray, w: BufferWindow): void {
  const whole = (x: number): boolean => Number.isSafeInteger(x) && x >= 0;
  if (!whole(w.offset) || !whole(w.total) || w.offset + buf.length > w.total) {
    throw new CommError(`allReduce window: elements [${w.offset}, ${w.offset} + ${buf.length}) do not lie in a buffer of ${w.total}`);
  }
}

export function checkOp(op: string, reduce: unknown): void {
  if (!REDUCE_OPS.includes(reduce as ReduceOp)) throw new CommError(`${op} op must be one of ${REDUCE_OPS.join(', ')}, got ${String(reduce)}`);
}

export function checkNumeric(op: string, buf: unknown): void {
  if (!(buf instanceof Float32Array || buf instanceof Float64Array || buf instanceof Int32Array || buf instanceof Uint8Array)) {
    throw new CommError(`${op} needs a Float32Array, Float64Array, Int32Array or Uint8Array, got ${typeName(buf)}`);
  }
}
