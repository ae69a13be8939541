import { test } from 'node:test';
import assert from 'node:assert/strict';
import { expandHostlist, expandTasksPerNode } from '../../shared/hostlist.js';

test('hostlists expand in order, keeping the zero padding of a range', () => {
  assert.deepEqual(expandHostlist('n[1-2]'), ['n1', 'n2']);
  assert.deepEqual(expandHostlist('gpu[01-04,07]'), ['gpu01', 'gpu02', 'gpu03', 'gpu04', 'gpu07']);
  assert.deepEqual(expandHostlist('n1'), ['n1']);
  assert.deepEqual(expandHostlist('a,b[3-4],c'), ['a', 'b3', 'b4', 'c']);
  assert.deepEqual(expandHostlist('rack[1-2]-node[01-02]'), ['rack1-node01', 'rack1-node02', 'rack2-node01', 'rack2-node02']);
  assert.deepEqual(expandHostlist('n[8-10]-ib'), ['n8-ib', 'n9-ib', 'n10-ib']);
  assert.deepEqual(expandHostlist('node[098-101]'), ['node098', 'node099', 'node100', 'node101']);
  assert.equal(expandHostlist('x[0-65535]').length, 65536);
});

test('malformed hostlists say what is wrong', () => {
  assert.throws(() => expandHostlist(''), /empty/);
  assert.throws(() => expandHostlist('n[1-2'), /unclosed bracket/);
  assert.throws(() => expandHostlist('n1-2]'), /unbalanced/);
  assert.throws(() => expandHostlist('n[[1]]'), /nested/);
  assert.throws(() => expandHostlist('n[2-1]'), /backwards/);
  assert.throws(() => expandHostlist('n[a-b]'), /not a number or a range/);
  assert.throws(() => expandHostlist('a,,b'), /empty entry/);
  assert.throws(() => expandHostlist('n[0-99999999]'), /more than 65536 hosts/);
});

test('tasks per node: N(xK) repeats', () => {
  assert.deepEqual(expandTasksPerNode('2(x2)'), [2, 2]);
  assert.deepEqual(expandTasksPerNode('2,1'), [2, 1]);
  assert.deepEqual(expandTasksPerNode('4(x3),2'), [4, 4, 4, 2]);
  assert.deepEqual(expandTasksPerNode('1'), [1]);
  assert.throws(() => expandTasksPerNode('2(3)'), /not N or N\(xK\)/);
  assert.throws(() => expandTasksPerNode(''), /not N or N\(xK\)/);
});
