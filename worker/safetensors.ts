/**
 * The safetensors format (https://github.com/huggingface/safetensors), F32 tensors only:
 *
 *   [8 bytes: N, uint64 little-endian] [N bytes: JSON header, padded with spaces] [data section]
 *
 * The header maps each tensor name to { dtype: "F32", shape, data_offsets: [begin, end] } (byte
 * offsets into the data section, which the tensors cover exactly, without gaps), plus an optional
 * "__metadata__" map of string to string. Data is raw little-endian float32, row-major.
 * We pad the header so the data section starts on an 8-byte boundary, as the reference writer does.
 */
import { endianness } from 'node:os';
import { FileError } from '../shared/errors.js';
import { numel } from './model/params.js';

export interface NamedTensor {
  readonly name: string;
  readonly shape: readonly number[];
  /** Row-major values; length = product of shape. */
  readonly data: Float32Array;
}

export interface SafetensorsContents {
  /** In file order (by data offset). */
  readonly tensors: readonly NamedTensor[];
  readonly metadata: Readonly<Record<string, string>>;
  /** The data section's bytes (what a checksum covers). */
  readonly dataSection: Uint8Array;
}

if (endianness() !== 'LE') throw new Error('safetensors.ts assumes a little-endian machine');

/** Encode tensors and metadata as one safetensors file image. */
export function encodeSafetensors(tensors: readonly NamedTensor[], metadata: Readonly<Record<string, string>> = {}): Uint8Array {
  for (const t of tensors) {
    if (numel(t.shape) !== t.data.length) {
      throw new RangeError(`safetensors: ${t.name} has ${t.data.length} values, shape [${t.shape.join(', ')}] needs ${numel(t.shape)}`);
    }
  }
  return encodeSafetensorsFilled(
    tensors.map((t) => ({ name: t.name, shape: t.shape, fill: (out) => out.set(t.data) })),
    metadata,
  );
}

/** A tensor that writes its row-major values into the file image itself (no copy of its own). */
export interface FilledTensor {
  readonly name: string;
  readonly shape: readonly number[];
  /** Write the values into `out` (length = product of shape; a view of the image). */
  readonly fill: (out: Float32Array) => void;
}

/** encodeSafetensors with each tensor's values written straight into the one image. */
export function encodeSafetensorsFilled(tensors: readonly FilledTensor[], metadata: Readonly<Record<string, string>> = {}): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    if (t.name === '__metadata__' || t.name in header) throw new RangeError(`safetensors: duplicate or reserved name ${t.name}`);
    const bytes = numel(t.shape) * 4;
    header[t.name] = { dtype: 'F32', shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  // Pad with spaces so that 8 + N is a multiple of 8.
  const jsonBytes = new TextEncoder().encode(json);
  const padded = Math.ceil((8 + jsonBytes.length) / 8) * 8 - 8;
  json += ' '.repeat(padded - jsonBytes.length);
  const out = new Uint8Array(8 + padded + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(new TextEncoder().encode(json), 8);
  // The data section starts on an 8-byte boundary and every tensor is float32: aligned views.
  let at = 8 + padded;
  for (const t of tensors) {
    const n = numel(t.shape);
    t.fill(new Float32Array(out.buffer, out.byteOffset + at, n));
    at += n * 4;
  }
  return out;
}

/** Decode a safetensors image; `source` names the file in errors. Throws FileError on any damage. */
export function decodeSafetensors(bytes: Uint8Array, source: string): SafetensorsContents {
  const bad = (what: string): FileError =>
    new FileError(`${source} is not a valid safetensors file: ${what}`, 'the file is damaged or truncated; delete it or restore a good copy');
  if (bytes.length < 8) throw bad(`only ${bytes.length} bytes long`);
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(bytes.length - 8)) throw bad(`header length ${n} exceeds the file size ${bytes.length}`);
  const dataStart = 8 + Number(n);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, dataStart)));
  } catch {
    throw bad('the header is not valid JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw bad('the header is not a JSON object');
  const dataSection = bytes.subarray(dataStart);
  const metadata: Record<string, string> = {};
  const entries: { name: string; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    const v = value as Record<string, unknown>;
    if (name === '__metadata__') {
      if (typeof v !== 'object' || v === null) throw bad('__metadata__ is not an object');
      for (const [k, s] of Object.entries(v)) {
        if (typeof s !== 'string') throw bad(`__metadata__.${k} is not a string`);
        metadata[k] = s;
      }
      continue;
    }
    const shape = v?.shape;
    const offsets = v?.data_offsets;
    if (v?.dtype !== 'F32') throw bad(`tensor ${name} has dtype ${String(v?.dtype)}; only F32 is supported`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw bad(`tensor ${name} has a bad shape`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw bad(`tensor ${name} has bad data_offsets`);
    }
    const [begin, end] = offsets as number[];
    if (end - begin !== numel(shape) * 4) throw bad(`tensor ${name}: data_offsets span ${end - begin} bytes, shape needs ${numel(shape) * 4}`);
    entries.push({ name, shape, begin, end });
  }
  entries.sort((a, b) => a.begin - b.begin);
  let expected = 0;
  for (const e of entries) {
    if (e.begin !== expected) throw bad(`tensor ${e.name} starts at byte ${e.begin}, expected ${expected} (gap or overlap)`);
    expected = e.end;
  }
  if (dataSection.length !== expected) {
    throw bad(`the data section has ${dataSection.length} bytes, the header describes ${expected} (truncated or extended)`);
  }
  const tensors = entries.map((e) => {
    // Copy into a fresh buffer: the values outlive `bytes` and need 4-byte alignment. (Not
    // `slice`: on a Node Buffer it returns a view of the whole pool.)
    const data = new Float32Array((e.end - e.begin) / 4);
    new Uint8Array(data.buffer).set(dataSection.subarray(e.begin, e.end));
    return { name: e.name, shape: e.shape, data };
  });
  return { tensors, metadata, dataSection };
}
