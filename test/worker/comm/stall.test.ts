import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Signature } from '../../../worker/comm/frames.js';
import { describeStall, isRankStatus, type RankStatus } from '../../../worker/comm/stall.js';

const sig: Signature = { kind: 'allReduce', seq: 9, dtype: 'float32', count: 64, op: 'mean' };
const st = (rank: number, seq: number, state: RankStatus['state'], extra: Partial<RankStatus> = {}): [number, RankStatus] => [
  rank,
  { rank, seq, collective: `#${seq} barrier()`, state, ...extra },
];

test('every kind of absence is named, with the op and sequence number', () => {
  const statuses = new Map([
    st(1, 9, 'running'),
    st(2, 8, 'idle'),
    st(3, 7, 'running'),
    st(5, 9, 'failed', { error: 'boom' }),
    st(6, 6, 'closed'),
    st(7, 9, 'closed'),
  ]);
  const { message, hint, missing } = describeStall(sig, 0, 8, 'timed out after 2.5 s', statuses);
  assert.equal(
    message,
    '#9 allReduce(mean, float32[64]) on rank 0 timed out after 2.5 s; ranks that did not take part: ' +
      '2 (has not called it; its latest collective is #8 barrier(), finished), ' +
      '3 (has not called it; its latest collective is #7 barrier(), still running), ' +
      '4 (no answer: stopped, stuck in a long computation, dead or unreachable), ' +
      '5 (failed: boom), 6 (closed its process group after #6 barrier())',
  );
  assert.equal(missing, 5, 'rank 7 finished #9 and then closed: it took part');
  assert.match(hint, /--collective-timeout/);
});

test('when everyone is in it, the message says the ring stalled', () => {
  const { message } = describeStall(sig, 1, 3, 'timed out after 1 s', new Map([st(0, 9, 'running'), st(2, 10, 'running')]));
  assert.match(message, /on rank 1 timed out after 1 s; every rank answered and is in it/);
});

test('status answers are validated', () => {
  assert.ok(isRankStatus({ rank: 1, seq: 0, collective: 'none', state: 'idle' }));
  for (const bad of [
    null,
    3,
    {},
    { rank: 1, seq: 0, collective: 'none', state: 'sleeping' },
    { rank: '1', seq: 0, collective: 'x', state: 'idle' },
    { rank: 1, seq: 0, collective: 'x', state: 'failed', error: 5 },
  ]) {
    assert.equal(isRankStatus(bad), false, JSON.stringify(bad));
  }
});

test('with hostOf, each missing rank is named with its host', () => {
  const hosts = ['10.77.0.11, node n1/0', '10.77.0.12, node n2/1'];
  const { message } = describeStall(sig, 0, 2, 'timed out after 5 s', new Map(), (r) => hosts[r]);
  assert.match(message, /ranks that did not take part: 1 on 10\.77\.0\.12, node n2\/1 \(no answer/);
});
