/**
 * The ZeroMQ transport frees received payloads itself (comm/detach.ts): at release when only
 * combined or copied, after a later collective every rank joined when forwarded (ZeroMQ may still
 * be reading it); and so receiving many MiB no longer forces V8's mark-compacts. Real sockets on
 * loopback, one process.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { canDetach, detach } from '../../../../worker/comm/detach.js';
import type { Header } from '../../../../worker/comm/frames.js';
import { bindTcp, Pull, Push } from '../../../../worker/comm/zmq/zmq.js';
import { ZmqTransport } from '../../../../worker/comm/zmq/zmq_transport.js';

const header: Header = { kind: 'allReduce', seq: 1, dtype: 'float32', count: 4, op: 'sum', step: 0, segment: 0 };

test('detach empties a buffer and its views at once', () => {
  assert.ok(canDetach(), 'this Node can detach ArrayBuffers');
  const ab = new ArrayBuffer(1 << 20);
  const view = new Float32Array(ab, 16, 4);
  assert.ok(detach(ab));
  assert.equal(ab.byteLength, 0);
  assert.equal(view.length, 0);
  assert.equal(detach(new WebAssemblyLike().buffer), false, 'a buffer that cannot be detached is left as it is');
});

/** A WebAssembly memory's buffer cannot be detached by transfer. */
class WebAssemblyLike {
  readonly buffer: ArrayBuffer = new (
    globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number }) => { buffer: ArrayBuffer } } }
  ).WebAssembly.Memory({
    initial: 1,
  }).buffer;
}

/** A ring of one: this transport's PUSH feeds its own PULL; `next` is a second PULL for forwarding. */
async function loop(): Promise<{ a: ZmqTransport; push: Push; close: () => void }> {
  const pull = new Pull({ linger: 0, receiveHighWaterMark: 0 });
  const push = new Push({ linger: 0, sendHighWaterMark: 0 });
  push.connect(await bindTcp(pull, '127.0.0.1'));
  const a = new ZmqTransport(push, pull, () => {});
  return {
    a,
    push,
    close: () => {
      pull.close();
      push.close();
    },
  };
}

test('a received payload is freed at release; a forwarded one only after a later collective every rank joined', async () => {
  const { a, close } = await loop();
  try {
    await a.send(header, new Uint8Array(65536).fill(1));
    const copied = (await a.receive()).payload;
    assert.equal(copied[100], 1);
    a.release(copied);
    assert.equal(copied.byteLength, 0, 'combined or copied only: freed at release');

    await a.send(header, new Uint8Array(65536).fill(2));
    const forwarded = (await a.receive()).payload;
    await a.send(header, forwarded); // as the ring forwards a combined segment
    a.release(forwarded);
    assert.equal(forwarded.byteLength, 65536, 'queued in ZeroMQ: not freed at release');
    a.collectiveEnded(true); // the collective that forwarded it: nothing proves delivery yet
    a.collectiveEnded(false); // a broadcast proves nothing either
    assert.equal(forwarded.byteLength, 65536);
    const again = (await a.receive()).payload;
    assert.ok(again.byteLength === 65536 && again.every((x) => x === 2), 'the forwarded message arrived intact');
    a.release(again);
    a.collectiveEnded(true); // every rank joined a later collective: the neighbour has it
    assert.equal(forwarded.byteLength, 0);
    assert.deepEqual(a.stats, { freedAtRelease: 2, freedAfterProof: 1, reused: 0, allocated: 0 });

    // Small payloads are left to the collector (freeing costs a turn of the event loop).
    await a.send(header, new Uint8Array(4096));
    const small = (await a.receive()).payload;
    a.release(small);
    assert.equal(small.byteLength, 4096);

    // Memory the transport did not receive is never freed by it.
    const own = new Uint8Array(65536);
    await a.send(header, own);
    a.release(own);
    a.collectiveEnded(true);
    a.collectiveEnded(true);
    assert.equal(own.byteLength, 65536);
    a.release((await a.receive()).payload);
  } finally {
    close();
  }
});

test('allocated memory is reused only once its message is proven received', async () => {
  const { a, close } = await loop();
  try {
    const out = a.allocate(65536).fill(5);
    await a.send(header, out);
    a.release(out);
    a.collectiveEnded(true);
    const other = a.allocate(65536);
    assert.notEqual(other.buffer, out.buffer, 'still possibly queued: not handed out again');
    const got = (await a.receive()).payload;
    assert.ok(got.every((x) => x === 5));
    a.release(got);
    a.release(other); // never sent: free for reuse at once
    assert.equal(a.allocate(65536).buffer, other.buffer);
    a.collectiveEnded(true);
    assert.equal(a.allocate(65536).buffer, out.buffer, 'after a later collective every rank joined');
    assert.deepEqual(a.stats, { freedAtRelease: 1, freedAfterProof: 0, reused: 2, allocated: 2 });
  } finally {
    close();
  }
});

test('receiving 256 MiB through the transport, released as the ring does, forces (almost) no mark-compact', async () => {
  const { a, close } = await loop();
  let major = 0;
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as unknown as { detail: { kind: number } }).detail.kind;
      if (kind === constants.NODE_PERFORMANCE_GC_MAJOR || kind === constants.NODE_PERFORMANCE_GC_INCREMENTAL) major += 1;
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  try {
    const segment = new Uint8Array(1 << 20).fill(3);
    for (let i = 0; i < 256; i++) {
      await a.send(header, segment);
      const m = await a.receive();
      assert.equal(m.payload[12345], 3);
      a.release(m.payload);
      if (i % 16 === 15) a.collectiveEnded(true);
    }
    await new Promise((r) => setImmediate(r));
    // Left to the collector (before this transport freed them), these 256 MiB forced 3–6
    // mark-compacts and as many incremental marking steps.
    assert.ok(major <= 2, `${major} mark-compacts and incremental marking steps`);
  } finally {
    observer.disconnect();
    close();
  }
});
