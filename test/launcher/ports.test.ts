import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { canBind, ephemeralRange, freePort } from '../../launcher/ports.js';
import { tempDir } from '../helpers/launcher_run.js';

test("the ephemeral range is read from the kernel's file, else Linux's default", () => {
  const dir = tempDir('ports');
  writeFileSync(join(dir, 'range'), '40000\t50000\n');
  assert.deepEqual(ephemeralRange(join(dir, 'range')), [40000, 50000]);
  writeFileSync(join(dir, 'bad'), 'x y\n');
  assert.deepEqual(ephemeralRange(join(dir, 'bad')), [32768, 60999]);
  assert.deepEqual(ephemeralRange(join(dir, 'none')), [32768, 60999]);
});

test("MASTER_PORT is picked below the ephemeral range, where no outgoing connection's local port can take it", async () => {
  for (let i = 0; i < 20; i++) {
    const port = await freePort('127.0.0.1', [40000, 60999]);
    assert.ok(port >= 20000 && port < 40000, `port ${port}`);
    assert.ok(await canBind('127.0.0.1', port), `port ${port} is free`);
  }
  // A range starting at the bottom leaves no room: the kernel's choice, free all the same.
  const kernel = await freePort('127.0.0.1', [1024, 65535]);
  assert.ok(await canBind('127.0.0.1', kernel));
  // A port in use is never the answer: with one candidate (range [20000, 20001) → 20000), take it and see.
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 20000, exclusive: true }, resolve);
  }).catch(() => undefined);
  try {
    if (server.listening) assert.notEqual(await freePort('127.0.0.1', [20001, 60999]), 20000);
  } finally {
    server.close();
  }
});
