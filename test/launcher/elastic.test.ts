import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { ElasticCoordinator, HOST_ID, type ElasticOptions } from '../../launcher/elastic.js';
import type { ProcessFailure } from '../../launcher/failures.js';
import type { ToNode } from '../../launcher/protocol.js';

/** A coordinator whose messages are recorded per node id; the host (id 0) is "h" with 2 workers. */
function setup(o: Partial<ElasticOptions> = {}) {
  const sent: [number, ToNode][] = [];
  const lines: string[] = [];
  const opts: ElasticOptions = { runId: 'r', minNodes: 2, maxNodes: 3, rdzvTimeoutMs: 300, lastCallMs: 40, maxRestarts: 1, ...o };
  const c = new ElasticCoordinator(
    opts,
    { label: 'h', localWorldSize: 2 },
    (id, m) => sent.push([id, m]),
    (l) => lines.push(l),
  );
  const take = (): [number, ToNode][] => sent.splice(0);
  return { c, take, lines };
}

const starts = (msgs: [number, ToNode][]) =>
  msgs.flatMap(([id, m]) =>
    m.type === 'start' ? [{ id, attempt: m.attempt, nodeRank: m.nodeRank, sizes: m.layout.localWorldSizes, restarts: m.restartCount, change: m.change }] : [],
  );

function failure(rank: number): ProcessFailure {
  return { rank, localRank: 0, nodeRank: 1, pid: 9, exitCode: 1, signal: null, time: 1 } as unknown as ProcessFailure;
}

test('MAX nodes start a round at once; node ranks follow arrival, the host first', () => {
  const { c, take } = setup();
  c.begin();
  c.join(7, { label: 'b', localWorldSize: 1 });
  assert.deepEqual(take(), [], 'MIN is there, but the last call runs');
  c.join(5, { label: 'c', localWorldSize: 3 });
  assert.deepEqual(
    starts(take()),
    [0, 7, 5].map((id, nodeRank) => ({ id, attempt: 0, nodeRank, sizes: [2, 1, 3], restarts: 0, change: undefined })),
  );
});

test('MIN nodes start a round when the last call ends; fewer than MIN for the rdzv timeout end the run on every node, one line', async () => {
  const { c, take } = setup();
  c.begin();
  c.join(1, { label: 'b', localWorldSize: 1 });
  await sleep(100);
  assert.deepEqual(
    starts(take()).map((s) => s.id),
    [HOST_ID, 1],
  );

  const lone = setup({ minNodes: 3, maxNodes: 4, rdzvTimeoutMs: 80 });
  lone.c.begin();
  lone.c.join(1, { label: 'b', localWorldSize: 1 });
  await sleep(150);
  const ends = lone.take();
  assert.deepEqual(
    ends.map(([id]) => id),
    [0, 1],
  );
  for (const [, m] of ends) {
    assert.ok(m.type === 'end' && !m.ok && m.rendezvousFailed === true);
    assert.equal(m.reason, '2 of the 3 nodes needed (--nnodes 3:4) joined within --rdzv-timeout 0.08 s');
  }
  assert.ok(lone.c.isEnded);
});

test('a lost member stops the round; the survivors go on from a new round that says so, spending a restart; the next loss ends the run', async () => {
  const { c, take } = setup({ maxRestarts: 1 });
  c.begin();
  c.join(1, { label: 'b', localWorldSize: 1 });
  c.join(2, { label: 'c', localWorldSize: 1 });
  take();
  c.lost(2, 'connection closed');
  assert.deepEqual(take(), [
    [0, { type: 'stop', attempt: 0 }],
    [1, { type: 'stop', attempt: 0 }],
  ]);
  c.receive(1, { type: 'finished', attempt: 0, failures: [failure(3)] });
  assert.deepEqual(take(), [], 'node 0 has not finished');
  c.receive(0, { type: 'finished', attempt: 0, failures: [] });
  await sleep(80);
  const s = starts(take());
  assert.deepEqual(
    s.map((x) => [x.id, x.nodeRank, x.restarts, x.change]),
    [
      [0, 0, 1, 'world size 4 → 3 (node c lost)'],
      [1, 1, 1, 'world size 4 → 3 (node c lost)'],
    ],
  );
  c.lost(1, 'no heartbeat for 15.0 s');
  c.receive(0, { type: 'finished', attempt: 1, failures: [] });
  const [[id, end]] = take().filter(([, m]) => m.type === 'end') as [[number, ToNode]];
  assert.equal(id, 0);
  assert.ok(end.type === 'end' && !end.ok);
  assert.equal(end.reason, 'node(s) b lost, and no restarts are left (--max-restarts 1)');
});

test('a node waiting while there is room ends the round without spending a restart; when full it waits for a place', async () => {
  const { c, take, lines } = setup({ maxNodes: 3, maxRestarts: 0 });
  c.begin();
  c.join(1, { label: 'b', localWorldSize: 1 });
  await sleep(80);
  take();
  c.join(2, { label: 'c', localWorldSize: 1 });
  assert.deepEqual(take(), [
    [0, { type: 'stop', attempt: 0 }],
    [1, { type: 'stop', attempt: 0 }],
  ]);
  c.receive(0, { type: 'finished', attempt: 0, failures: [] });
  c.receive(1, { type: 'finished', attempt: 0, failures: [] });
  assert.deepEqual(
    starts(take()).map((x) => [x.id, x.nodeRank, x.restarts, x.change]),
    [
      [0, 0, 0, 'world size 3 → 4 (node c joined)'],
      [1, 1, 0, 'world size 3 → 4 (node c joined)'],
      [2, 2, 0, 'world size 3 → 4 (node c joined)'],
    ],
  );
  c.join(3, { label: 'd', localWorldSize: 1 });
  assert.deepEqual(take(), [], 'full: the round goes on');
  assert.match(lines.at(-1) ?? '', /node d is waiting: the run has 3 nodes \(MAX\)/);
  for (const id of [0, 1, 2]) c.receive(id, { type: 'finished', attempt: 1, failures: [] });
  assert.deepEqual(
    take().map(([id, m]) => [id, m.type, m.type === 'end' && m.ok]),
    [
      [0, 'end', true],
      [1, 'end', true],
      [2, 'end', true],
      [3, 'end', true],
    ],
  );
});

test("the host interrupted ends the run; another launcher interrupted (a preempted machine's SIGTERM) leaves it", async () => {
  const { c, take } = setup({ maxRestarts: 3, maxNodes: 3 });
  c.begin();
  c.join(1, { label: 'b', localWorldSize: 1 });
  c.join(2, { label: 'c', localWorldSize: 1 });
  take();
  c.receive(2, { type: 'abort', attempt: 0, signal: 'SIGTERM' });
  c.receive(2, { type: 'finished', attempt: 0, failures: [] });
  c.receive(0, { type: 'finished', attempt: 0, failures: [] });
  c.receive(1, { type: 'finished', attempt: 0, failures: [] });
  await sleep(80);
  assert.deepEqual(
    starts(take()).map((x) => x.change),
    ['world size 4 → 3 (node c lost)', 'world size 4 → 3 (node c lost)'],
  );
  c.receive(0, { type: 'abort', attempt: 1, signal: 'SIGINT' });
  c.receive(0, { type: 'finished', attempt: 1, failures: [] });
  c.receive(1, { type: 'finished', attempt: 1, failures: [] });
  const ends = take().filter(([, m]) => m.type === 'end');
  assert.equal(ends.length, 2);
  for (const [, m] of ends) assert.ok(m.type === 'end' && !m.ok && /node 0 \(h, the rendezvous host\) received SIGINT/.test(m.reason ?? ''));
});
