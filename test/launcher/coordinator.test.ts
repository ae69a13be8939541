import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Coordinator } from '../../launcher/coordinator.js';
import type { ProcessFailure } from '../../launcher/failures.js';
import type { ToNode } from '../../launcher/protocol.js';

const layout = { runId: 'r', worldSize: 3, localWorldSizes: [2, 1] };

function failure(rank: number, time: number): ProcessFailure {
  return { rank, localRank: 0, nodeRank: rank >> 1, nodeId: 'h', pid: rank, exitCode: 3, signal: null, time, message: undefined, errorFile: undefined };
}

/** A coordinator of two nodes and the messages each node got. */
function setup(maxRestarts: number) {
  const inbox: ToNode[][] = [[], []];
  const c = new Coordinator({ layout, maxRestarts }, (node, msg) => inbox[node]?.push(msg));
  c.begin();
  const types = (node: number) => (inbox[node] ?? []).map((m) => `${m.type}${m.attempt}`);
  return { c, inbox, types };
}

test('all nodes succeed: the run ends ok', () => {
  const { c, types, inbox } = setup(0);
  c.receive(0, { type: 'finished', attempt: 0, failures: [] });
  assert.deepEqual(types(1), ['start0'], 'nothing is decided before every node reported');
  c.receive(1, { type: 'finished', attempt: 0, failures: [] });
  assert.deepEqual(types(0), ['start0', 'end0']);
  assert.deepEqual(types(1), ['start0', 'end0']);
  assert.equal((inbox[1]?.[1] as Extract<ToNode, { type: 'end' }>).ok, true);
});

test('a failing node stops every node; with restarts left every node starts the next attempt', () => {
  const { c, types, inbox } = setup(1);
  c.receive(1, { type: 'failing', attempt: 0 });
  assert.deepEqual(types(0), ['start0', 'stop0']);
  c.receive(1, { type: 'finished', attempt: 0, failures: [failure(2, 10)] });
  c.receive(0, { type: 'finished', attempt: 0, failures: [failure(0, 20)] });
  assert.deepEqual(types(0), ['start0', 'stop0', 'start1']);
  assert.deepEqual(types(1), ['start0', 'stop0', 'start1']);
  const restart = inbox[0]?.[2] as Extract<ToNode, { type: 'start' }>;
  assert.equal(restart.cause?.rank, 2, 'the earliest failure is the cause');
  // A late message about attempt 0 changes nothing.
  c.receive(0, { type: 'failing', attempt: 0 });
  assert.deepEqual(types(0), ['start0', 'stop0', 'start1']);
  // No restarts left: the run ends with every failure, earliest first.
  c.receive(0, { type: 'finished', attempt: 1, failures: [failure(1, 50)] });
  c.receive(1, { type: 'finished', attempt: 1, failures: [failure(2, 40)] });
  const end = inbox[1]?.at(-1) as Extract<ToNode, { type: 'end' }>;
  assert.deepEqual([end.type, end.ok, end.attempt, end.failures.map((f) => f.rank)], ['end', false, 1, [2, 1]]);
});

test('an interrupted launcher or a lost node ends the run even with restarts left', () => {
  const a = setup(5);
  a.c.receive(1, { type: 'abort', attempt: 0, signal: 'SIGINT' });
  assert.deepEqual(a.types(0), ['start0', 'stop0']);
  a.c.receive(1, { type: 'finished', attempt: 0, failures: [] });
  a.c.receive(0, { type: 'finished', attempt: 0, failures: [] });
  const end = a.inbox[0]?.at(-1) as Extract<ToNode, { type: 'end' }>;
  assert.deepEqual([end.type, end.ok], ['end', false]);
  assert.match(end.reason ?? '', /node 1 received SIGINT/);

  const b = setup(5);
  b.c.lost(1, 'connection reset');
  b.c.receive(0, { type: 'finished', attempt: 0, failures: [] });
  const lost = b.inbox[0]?.at(-1) as Extract<ToNode, { type: 'end' }>;
  assert.deepEqual([lost.type, lost.ok], ['end', false]);
  assert.match(lost.reason ?? '', /lost contact with the launcher of node 1 \(connection reset\)/);
  b.c.lost(0, 'after the end');
  assert.equal(b.types(0).length, 3, 'nothing after the end');
});
