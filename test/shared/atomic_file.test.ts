import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { writeFileAtomicSync } from '../../shared/atomic_file.js';
import { tempDir } from '../helpers/temp_dir.js';

{
  const name = 'writeFileAtomicSync';
  const write = async (p: string, b: Uint8Array, d?: boolean) => writeFileAtomicSync(p, b, d);
  test(`${name}: creates the directory, replaces the old file, leaves no temporary file`, async () => {
    const dir = tempDir('atomic');
    const path = join(dir, 'a', 'b', 'f.bin');
    await write(path, Buffer.from('first'), true);
    await write(path, Buffer.from('second'));
    assert.equal(readFileSync(path, 'utf8'), 'second');
    assert.deepEqual(readdirSync(join(dir, 'a', 'b')), ['f.bin']);
  });

  test(`${name}: a failed write throws and keeps the old file byte for byte, no temporary file left`, async () => {
    const dir = tempDir('atomic');
    const path = join(dir, 'f.bin');
    writeFileSync(path, 'old');
    mkdirSync(join(dir, 'sub'));
    // A directory in the way of the rename: the temporary file is written, the rename fails.
    await assert.rejects(async () => write(join(dir, 'sub'), Buffer.from('new')), /EISDIR|ENOTEMPTY|EEXIST|EPERM/);
    await assert.rejects(async () => write(join(dir, 'x'.repeat(300)), Buffer.from('new')), /ENAMETOOLONG/);
    assert.equal(readFileSync(path, 'utf8'), 'old');
    assert.deepEqual(readdirSync(dir).sort(), ['f.bin', 'sub']);
  });
}
