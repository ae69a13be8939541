import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { channelKeys, hmac, LineReader, SignedChannel } from '../../launcher/control_channel.js';

/** A connected pair of loopback sockets. */
async function pair(): Promise<[Socket, Socket, () => void]> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const client = connect(port, '127.0.0.1');
  const serverSide = await accepted;
  return [serverSide, client, () => server.close()];
}

test('signed frames pass in order both ways; lines sent together are not lost', { timeout: 20_000 }, async () => {
  const [a, b, done] = await pair();
  const keys = channelKeys('secret-of-the-run', 'n0', 'nk');
  const ra = new LineReader(a);
  b.write('hello line\n');
  assert.equal(await ra.next(5000), 'hello line');
  const A = new SignedChannel(a, ra, keys.toClient, keys.toServer);
  const B = new SignedChannel(b, new LineReader(b), keys.toServer, keys.toClient);
  const got: unknown[] = [];
  const three = new Promise<void>((r) => B.onMessage((m) => (got.push(m), got.length === 3 && r())));
  A.send({ n: 1 });
  A.send({ n: 2 });
  A.send({ n: 3 });
  await three;
  assert.deepEqual(got, [{ n: 1 }, { n: 2 }, { n: 3 }]);
  const back = new Promise<unknown>((r) => A.onMessage(r));
  B.send('pong');
  assert.equal(await back, 'pong');
  await Promise.all([A.close(), B.close()]);
  done();
});

/** Send `line` raw to a channel; resolves with why the channel closed and what got through. */
async function attack(line: (keys: ReturnType<typeof channelKeys>) => string): Promise<{ why: string; messages: unknown[] }> {
  const [a, b, done] = await pair();
  const keys = channelKeys('secret-of-the-run', 'n0', 'nk');
  const A = new SignedChannel(a, new LineReader(a), keys.toClient, keys.toServer);
  const messages: unknown[] = [];
  A.onMessage((m) => messages.push(m));
  const closed = new Promise<string>((r) => A.onClose(r));
  b.on('error', () => {});
  b.write(`${line(keys)}\n`);
  const why = await closed;
  b.destroy();
  done();
  return { why, messages };
}

test('garbage, a wrong key, a reflected frame and a replayed frame close the channel', { timeout: 20_000 }, async () => {
  const frame = (key: Buffer, seq: number, body: unknown) => {
    const json = JSON.stringify({ seq, body });
    return `${hmac(key, json)} ${json}`;
  };
  const stranger = channelKeys('another-secret', 'n0', 'nk');
  const cases: [(k: ReturnType<typeof channelKeys>) => string, RegExp, unknown[]][] = [
    [() => 'garbage', /failed authentication/, []],
    [() => frame(stranger.toServer, 0, { type: 'failing', attempt: 0 }), /failed authentication/, []],
    // Signed with the key of the other direction: a frame reflected back to its sender.
    [(k) => frame(k.toClient, 0, { type: 'stop', attempt: 0 }), /failed authentication/, []],
    [(k) => `${frame(k.toServer, 0, 'one')}\n${frame(k.toServer, 0, 'one again')}`, /arrived where 1 was due/, ['one']],
  ];
  for (const [line, why, delivered] of cases) {
    const r = await attack(line);
    assert.match(r.why, why);
    assert.deepEqual(r.messages, delivered);
  }
});

test(
  'heartbeats: two live peers stay connected past the timeout, and heartbeats never reach the handler; a silent peer is closed',
  { timeout: 20_000 },
  async () => {
    const [a, b, done] = await pair();
    const keys = channelKeys('secret-of-the-run', 'n0', 'nk');
    const A = new SignedChannel(a, new LineReader(a), keys.toClient, keys.toServer);
    const B = new SignedChannel(b, new LineReader(b), keys.toServer, keys.toClient);
    const seen: unknown[] = [];
    A.onMessage((m) => seen.push(m));
    B.onMessage((m) => seen.push(m));
    let closedEarly = false;
    A.onClose(() => (closedEarly = true));
    A.keepAlive(20, 150);
    B.keepAlive(20, 150);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(closedEarly, false, 'heartbeats kept the channel open');
    assert.deepEqual(seen, []);
    await Promise.all([A.close(), B.close()]);

    // A peer that still holds the connection but says nothing (a frozen host).
    const [c, d, done2] = await pair();
    const C = new SignedChannel(c, new LineReader(c), keys.toClient, keys.toServer);
    d.on('error', () => {});
    const started = Date.now();
    const why = new Promise<string>((r) => C.onClose(r));
    C.keepAlive(20, 150);
    assert.match(await why, /^no heartbeat for 0\.\d s$/);
    assert.ok(Date.now() - started >= 150);
    d.destroy();
    done();
    done2();
  },
);

test('a frame whose UTF-8 character is split across two TCP segments is read whole', { timeout: 20_000 }, async () => {
  const [a, b, done] = await pair();
  const keys = channelKeys('secret-of-the-run', 'n0', 'nk');
  const A = new SignedChannel(a, new LineReader(a), keys.toClient, keys.toServer);
  const got = new Promise<unknown>((r) => A.onMessage(r));
  // A corrupted character fails the MAC, which closes the channel.
  const closed = new Promise<unknown>((r) => A.onClose((why) => r({ closed: why })));
  const json = JSON.stringify({ seq: 0, body: { message: 'ランク 1 が失敗しました' } });
  const frame = Buffer.from(`${hmac(keys.toServer, json)} ${json}\n`);
  const cut = frame.indexOf(Buffer.from('失')) + 1;
  b.setNoDelay(true);
  b.write(frame.subarray(0, cut));
  await new Promise((r) => setTimeout(r, 50));
  b.write(frame.subarray(cut));
  assert.deepEqual(await Promise.race([got, closed]), { message: 'ランク 1 が失敗しました' });
  await Promise.all([A.close(), new Promise<void>((r) => b.end(() => r()))]);
  done();
});
