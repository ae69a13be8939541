/**
 * The files of a `text:<path>` dataset: a UTF-8 file, or a folder of them read recursively in
 * sorted order (names starting with "." skipped, empty files skipped), so that every machine sees
 * the same documents in the same order. Errors name the path and say what to do.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { FileError } from '../../shared/errors.js';

export interface TextFile {
  /** Path relative to the dataset root ('/'-separated; the file's base name for a single file). */
  readonly name: string;
  readonly path: string;
  readonly size: number;
  readonly mtimeMs: number;
}

/** The non-empty files under root in sorted order (names starting with "." are skipped). */
export async function listTextFiles(root: string, spec: string): Promise<TextFile[]> {
  const top = await stat(root).catch((e: NodeJS.ErrnoException) => {
    throw new FileError(`${spec}: ${e.code === 'ENOENT' ? 'no such file or folder' : e.message}`, 'check the path after text:');
  });
  if (top.isFile()) {
    if (top.size === 0) throw new FileError(`${spec}: the file is empty`, 'give a file with some text');
    return [{ name: basename(root), path: root, size: top.size, mtimeMs: top.mtimeMs }];
  }
  const files: TextFile[] = [];
  const walk = async (dir: string, prefix: string): Promise<void> => {
    const entries = (await readdir(dir)).filter((n) => !n.startsWith('.')).sort();
    for (const entry of entries) {
      const path = join(dir, entry);
      const info = await stat(path);
      if (info.isDirectory()) await walk(path, `${prefix}${entry}/`);
      else if (info.isFile() && info.size > 0) files.push({ name: `${prefix}${entry}`, path, size: info.size, mtimeMs: info.mtimeMs });
    }
  };
  await walk(root, '').catch((e: Error) => {
    throw new FileError(`${spec}: cannot list the folder: ${e.message}`, 'check the folder and its permissions', { cause: e });
  });
  if (files.length === 0) {
    throw new FileError(`${spec}: the folder has no non-empty files`, 'put UTF-8 text files in it');
  }
  return files;
}

/** Reads a UTF-8 file; rejects other encodings with the file and the byte offset of the first bad byte. */
export async function readUtf8(path: string): Promise<string> {
  const bytes = await readFile(path).catch((e: Error) => {
    throw new FileError(`cannot read ${path}: ${e.message}`, 'check the file and its permissions', { cause: e });
  });
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (e) {
    const at = invalidUtf8Offset(bytes);
    const where = at < 0 ? '' : ` (invalid sequence at byte offset ${at}: 0x${bytes[at].toString(16).padStart(2, '0')})`;
    throw new FileError(
      `${path}: not UTF-8${where}`,
      'convert the file to UTF-8 (e.g. iconv -t UTF-8) or leave it out',
      { cause: e },
    );
  }
}

/** Offset of the first byte that starts an invalid UTF-8 sequence (RFC 3629), or -1 if none. */
export function invalidUtf8Offset(b: Uint8Array): number {
  for (let i = 0; i < b.length; ) {
    const c = b[i];
    if (c < 0x80) {
      i += 1;
      continue;
    }
    const extra = c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : 0;
    if (extra === 0 || i + extra >= b.length) return i;
    // The second byte's range excludes overlong forms, surrogates and code points above U+10FFFF.
    const lo = c === 0xe0 ? 0xa0 : c === 0xf0 ? 0x90 : 0x80;
    const hi = c === 0xed ? 0x9f : c === 0xf4 ? 0x8f : 0xbf;
    if (b[i + 1] < lo || b[i + 1] > hi) return i;
    for (let k = 2; k <= extra; k++) if ((b[i + k] & 0xc0) !== 0x80) return i;
    i += extra + 1;
  }
  return -1;
}
