/**
 * The ring's stream-socket transport in one process, over real Unix sockets: reused receive
 * memory, the hello that admits only the right neighbour with the run's secret, and a garbage
 * stream that fails the receiver instead of derailing it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommError } from '../../../../shared/errors.js';
import { encodeHeader, type Header } from '../../../../worker/comm/frames.js';
import { checkHello, connectLeft, DataServer, encodeHello, HELLO_BYTES } from '../../../../worker/comm/net/stream_links.js';
import { BufferPool, StreamTransport } from '../../../../worker/comm/net/stream_transport.js';
import { RingGroup } from '../../../../worker/comm/ring_group.js';
import { tokenFor } from '../../../../worker/comm/zmq/zmq.js';

const TOKEN = tokenFor('the run secret');

test('the pool hands a buffer back only when the ring and every send of it are done', () => {
  const pool = new BufferPool(1024, 1 << 20);
  const a = pool.take(100);
  assert.equal(a.byteLength, 100);
  assert.equal(a.buffer.byteLength, 1024, 'at least minBytes, so that any segment fits');
  pool.retain(a); // a send
  pool.release(a); // the ring is done
  const b = pool.take(100);
  assert.notEqual(b.buffer, a.buffer, 'still being written: not reused');
  pool.release(a); // the write finished
  assert.equal(pool.take(1000).buffer, a.buffer, 'now reused');
  assert.equal(pool.created, 2);
  pool.release(new Uint8Array(8)); // not the pool's: ignored
});

test("hellos: only the expected rank with the run's token passes", () => {
  assert.equal(checkHello(encodeHello(3, TOKEN), 3, TOKEN), undefined);
  assert.match(checkHello(encodeHello(3, tokenFor('guess')), 3, TOKEN) ?? '', /wrong credentials/);
  assert.match(checkHello(encodeHello(3, undefined), 3, TOKEN) ?? '', /wrong credentials/);
  assert.match(checkHello(encodeHello(2, TOKEN), 3, TOKEN) ?? '', /claims rank 2, only rank 3/);
  assert.match(checkHello(new Uint8Array(HELLO_BYTES), 3, TOKEN) ?? '', /not a rosedist data connection/);
  assert.equal(checkHello(encodeHello(1, undefined), 1, undefined), undefined, 'without a secret, the rank is checked');
});

/** Two ranks of a ring in this process over real Unix sockets, with the run's token. */
async function twoRanks(dir: string, warn: (m: string) => void) {
  const servers = await Promise.all([0, 1].map((rank) => DataServer.listen(join(dir, `d${rank}.sock`), '127.0.0.1', 1 - rank, TOKEN, warn)));
  const transports = [0, 1].map(() => new StreamTransport(new BufferPool(1 << 16, 64 << 20), 0, 0));
  const inbound = await Promise.all([0, 1].map((rank) => connectLeft(servers[1 - rank]!.endpoints.ipc, encodeHello(rank, TOKEN), transports[rank]!, 1 - rank)));
  const outbound = await Promise.all(servers.map((s) => s.server.accepted));
  transports.forEach((t, rank) => t.attach(outbound[rank]!));
  const groups = transports.map(
    (transport, rank) =>
      new RingGroup({
        rank,
        worldSize: 2,
        transport,
        segmentBytes: 1 << 16,
        collectiveTimeoutMs: 20_000,
        control: { probe: async () => new Map(), abort: async () => {}, close: async () => {} },
      }),
  );
  const close = (): void => {
    for (const s of [...inbound, ...outbound]) s.destroy();
    for (const s of servers) s.server.close();
  };
  return { servers, transports, groups, close };
}

test('two ranks all-reduce over Unix sockets; receive buffers are reused from round to round', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stream-'));
  const world = await twoRanks(dir, () => {});
  try {
    const n = 300_000; // 1.2 MB: 10 segments of 64 KiB per rank and phase, 20 received per all-reduce
    const perRound = 2 * Math.ceil(n / 2 / (1 << 14)) + 1; // and 1 of the all-gather
    for (let round = 0; round < 5; round++) {
      const bufs = [0, 1].map((rank) => Float32Array.from({ length: n }, (_, i) => (i % 97) * (rank + 1) + round));
      await Promise.all(world.groups.map((g, rank) => g.allReduce(bufs[rank]!)));
      for (const b of bufs) for (let i = 0; i < n; i += 997) assert.equal(b[i], (i % 97) * 3 + 2 * round);
      const results = await Promise.all(world.groups.map((g, rank) => g.allGather(Int32Array.of(rank, round))));
      for (const r of results) assert.deepEqual(r, [Int32Array.of(0, round), Int32Array.of(1, round)]);
    }
    // 5 rounds received 5 × perRound messages on each rank; buffers were made for at most one
    // round's worth (how many depends on how far the reader lags), the rest reused them.
    for (const t of world.transports) assert.ok(t.pool.created > 0 && t.pool.created <= perRound, `${t.pool.created} buffers for ${5 * perRound} messages`);
  } finally {
    world.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

function raw(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ path }, () => resolve(s));
    s.on('error', reject);
  });
}

const closed = (s: Socket): Promise<void> => new Promise((resolve) => (s.destroyed ? resolve() : s.once('close', () => resolve())));

test('strangers are refused and logged: without the secret, as another rank, with garbage; the rank is then accepted', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stream-'));
  const warnings: string[] = [];
  const { server, endpoints } = await DataServer.listen(join(dir, 'd.sock'), '127.0.0.1', 1, TOKEN, (m) => warnings.push(m));
  const path = endpoints.ipc.slice('ipc://'.length);
  try {
    for (const hello of [encodeHello(1, tokenFor('guess')), encodeHello(2, TOKEN), new Uint8Array(HELLO_BYTES).fill(7)]) {
      const s = await raw(path);
      s.on('error', () => {});
      s.write(hello);
      await closed(s);
    }
    assert.equal(warnings.length, 3, warnings.join('\n'));
    assert.match(warnings[0]!, /data socket: refused a connection from .*: wrong credentials/);
    assert.match(warnings[1]!, /claims rank 2, only rank 1 connects here/);
    assert.match(warnings[2]!, /not a rosedist data connection/);
    const member = await raw(path);
    member.write(encodeHello(1, TOKEN));
    const accepted = await server.accepted;
    const late = await raw(path);
    late.on('error', () => {});
    late.write(encodeHello(1, TOKEN));
    await closed(late);
    assert.match(warnings[3] ?? '', /already established/);
    accepted.destroy();
    member.destroy();
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a malformed message on the stream fails the receiver with a CommError naming the left rank', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stream-'));
  const { server, endpoints } = await DataServer.listen(join(dir, 'd.sock'), '127.0.0.1', 1, undefined, () => {});
  const transport = new StreamTransport(new BufferPool(1024, 1 << 20), 4, 1);
  try {
    const inbound = await connectLeft(endpoints.ipc, encodeHello(1, undefined), transport, 4);
    const out = await server.accepted;
    const header: Header = { kind: 'allReduce', seq: 1, dtype: 'float32', count: 2, op: 'sum', step: 0, segment: 0 };
    // A good message first, then 40 bytes of garbage.
    const prefix = new Uint8Array(40);
    prefix.set(encodeHeader(header));
    new DataView(prefix.buffer).setUint32(32, 8, true);
    out.write(prefix);
    out.write(new Uint8Array(new Float32Array([1, 2]).buffer));
    out.write(new Uint8Array(40).fill(0xab));
    const m = await transport.receive();
    assert.deepEqual(new Float32Array(m.payload.buffer, m.payload.byteOffset, 2), new Float32Array([1, 2]));
    await assert.rejects(
      transport.receive(),
      (e) => e instanceof CommError && /data connection from rank 4: received a malformed message header/.test(e.message),
    );
    await assert.rejects(transport.receive(), CommError, 'and every later one');
    inbound.destroy();
    out.destroy();
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
