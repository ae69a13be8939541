/**
 * A cache of tokenized corpora, so that tag stripping and tokenizing run once per machine.
 *
 * One file per (corpus, tokenizer, format version, source identity): the caller folds all of it
 * into `key`, a string stored in the file and hashed into its name. File layout (little-endian;
 * typed arrays are written in host order, little-endian on every platform Node targets):
 *
 *   bytes 0–7    magic "RDTOKv1\n"
 *   bytes 8–11   header length H (uint32)
 *   next H bytes header JSON: { key, tokenWidth (2 | 4 bytes), tokenCount, sha256 (of the payload),
 *                documents: [name, start, length][] }   (start/length in tokens)
 *   rest         payload: tokenCount ids as uint16 or uint32
 *
 * Writes go to a temporary file in the same folder and are renamed into place, so a reader (another
 * rank preparing the same corpus at the same time) sees the old file, the new one or none: never half.
 * A file that is short, fails its checksum or holds another key reads as "damaged" and is rebuilt.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomicSync } from '../../shared/atomic_file.js';
import { FileError } from '../../shared/errors.js';

/** Bump when the file layout or what goes into a cached corpus changes (tag stripping included). */
export const TOKEN_CACHE_VERSION = 1;
const MAGIC = Buffer.from('RDTOKv1\n', 'latin1');

/** A document's place in the token array. */
export interface DocumentSpan {
  readonly name: string;
  /** First token, and number of tokens (separators between documents belong to no document). */
  readonly start: number;
  readonly length: number;
}

/** A tokenized corpus: every document's tokens, in order, joined by the tokenizer's separator. */
export interface TokenizedCorpus {
  readonly tokens: Int32Array;
  readonly documents: readonly DocumentSpan[];
}

export type CacheRead =
  | { readonly status: 'hit'; readonly corpus: TokenizedCorpus }
  | { readonly status: 'missing' }
  | { readonly status: 'damaged'; readonly reason: string };

interface Header {
  key: string;
  tokenWidth: 2 | 4;
  tokenCount: number;
  sha256: string;
  documents: [string, number, number][];
}

/** The cache file for a key: <dataDir>/<label>-<hash of key>.tokens (label: readable, e.g. "brown-byte"). */
export function cacheFilePath(dataDir: string, label: string, key: string): string {
  const safe = label.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 60);
  const hash = createHash('sha256').update(key).digest('hex').slice(0, 16);
  return join(dataDir, `${safe}-${hash}.tokens`);
}

/** Reads a cache file; never throws for a missing or damaged file (the caller rebuilds it). */
export async function readTokenCache(path: string, key: string): Promise<CacheRead> {
  let file: Buffer;
  try {
    file = await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { status: 'missing' };
    return { status: 'damaged', reason: (e as Error).message };
  }
  try {
    return { status: 'hit', corpus: decode(file, key) };
  } catch (e) {
    return { status: 'damaged', reason: (e as Error).message };
  }
}

function decode(file: Buffer, key: string): TokenizedCorpus {
  if (file.length < 12 || !file.subarray(0, 8).equals(MAGIC)) throw new Error('bad magic');
  const headerLength = file.readUInt32LE(8);
  if (12 + headerLength > file.length) throw new Error('header cut short');
  const header = JSON.parse(file.subarray(12, 12 + headerLength).toString('utf8')) as Header;
  if (header.key !== key) throw new Error('another key');
  const payload = file.subarray(12 + headerLength);
  if (payload.length !== header.tokenCount * header.tokenWidth) throw new Error('payload cut short');
  if (createHash('sha256').update(payload).digest('hex') !== header.sha256) throw new Error('checksum');
  // Copy out: the payload's offset in the file is not aligned for a typed-array view.
  const raw = new Uint8Array(payload).buffer;
  const ids = header.tokenWidth === 2 ? new Uint16Array(raw) : new Uint32Array(raw);
  const documents = header.documents.map(([name, start, length]) => ({ name, start, length }));
  return { tokens: Int32Array.from(ids), documents };
}

/** Writes atomically (temporary file + rename), creating dataDir; throws FileError if it cannot. */
export async function writeTokenCache(path: string, key: string, corpus: TokenizedCorpus): Promise<void> {
  let max = 0;
  for (const id of corpus.tokens) if (id > max) max = id;
  const tokenWidth = max < 65536 ? 2 : 4;
  const ids = tokenWidth === 2 ? Uint16Array.from(corpus.tokens) : Uint32Array.from(corpus.tokens);
  const payload = Buffer.from(ids.buffer, ids.byteOffset, ids.byteLength);
  const header: Header = {
    key,
    tokenWidth,
    tokenCount: corpus.tokens.length,
    sha256: createHash('sha256').update(payload).digest('hex'),
    documents: corpus.documents.map((d) => [d.name, d.start, d.length]),
  };
  const headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
  const headerLength = Buffer.alloc(4);
  headerLength.writeUInt32LE(headerBytes.length);
  try {
    writeFileAtomicSync(path, Buffer.concat([MAGIC, headerLength, headerBytes, payload]));
  } catch (e) {
    throw new FileError(
      `cannot write the token cache ${path}: ${(e as Error).message}`,
      'pass a writable --data-dir',
      { cause: e },
    );
  }
}
