/**
 * The hierarchical all-reduce over real processes and ZeroMQ sockets on loopback
 * (test/fixtures/hier_worker.ts): 2 pretend hosts × 2 workers (tcp:// between the hosts, ipc://
 * within, as test/helpers/workers.ts sets GROUP_RANK, LOCAL_RANK and LOCAL_WORLD_SIZE for a
 * multi-node run on one machine). Checks the automatic choice, the override, the same bits on
 * every rank, the flat ring's result within float32 rounding, and the one-line error for
 * hierarchical on a topology without several hosts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { packagePath } from '../../shared/runtime.js';
import { spawnGroup, type WorkerExit } from '../helpers/workers.js';

const WORKER = packagePath('test/fixtures/hier_worker.ts');

interface Result {
  case: string;
  ok?: boolean;
  digest?: string;
  differs?: boolean;
  topology?: string;
  describe?: string;
}

function results(r: WorkerExit): Result[] {
  return r.stdout
    .split('\n')
    .filter((l) => l.startsWith('RESULT '))
    .map((l) => JSON.parse(l.slice(7)) as Result);
}

function allOk(runs: WorkerExit[]): Result[][] {
  for (const r of runs)
    assert.equal(r.code, 0, `rank ${r.rank} exited ${r.code}; every rank's stderr:\n${runs.map((x) => `[${x.rank}] ${x.stderr}`).join('\n')}`);
  return runs.map(results);
}

test('2 hosts × 2 workers, auto: hierarchical; the same bits on every rank, the flat ring within rounding', async () => {
  const per = allOk(await spawnGroup(WORKER, 4, { nodes: 2, args: ['--topology', 'auto'], timeoutMs: 180_000 }));
  for (const rs of per) {
    assert.equal(rs[0].topology, 'hierarchical');
    assert.match(rs[0].describe!, /^all-reduce: hierarchical \(2 hosts × 2 workers; auto\)/);
    assert.equal(rs.length, 9);
    for (const r of rs.slice(1)) assert.ok(r.ok, `${r.case}: ${JSON.stringify(r)}`);
  }
  for (let i = 1; i < per[0].length; i++) {
    assert.equal(new Set(per.map((rs) => rs[i].digest)).size, 1, `${per[0][i].case}: ranks differ`);
  }
  // The large float32 sum takes another summation order than the flat ring: the check above is not vacuous.
  assert.ok(per[0].find((r) => r.case === 'float32[1048579] sum')!.differs, 'hierarchical gave exactly the flat bits: is it running?');
});

test('2 hosts × 2 workers, --topology flat: the flat ring (the same bits as the world ring)', async () => {
  const per = allOk(await spawnGroup(WORKER, 4, { nodes: 2, args: ['--topology', 'flat'], timeoutMs: 180_000 }));
  for (const rs of per) {
    assert.equal(rs[0].topology, 'flat');
    for (const r of rs.slice(1)) assert.ok(r.ok && !r.differs, `${r.case}: ${JSON.stringify(r)}`);
  }
});

test('1 host × 2 workers: auto is flat; hierarchical asked for stops every rank with one line naming the shape', async () => {
  const auto = allOk(await spawnGroup(WORKER, 2, { nodes: 1, args: ['--topology', 'auto'], timeoutMs: 120_000 }));
  for (const rs of auto) assert.equal(rs[0].topology, 'flat');
  const runs = await spawnGroup(WORKER, 2, { nodes: 1, args: ['--topology', 'hierarchical'], timeoutMs: 120_000 });
  for (const r of runs) {
    assert.equal(r.code, 1, r.stderr);
    assert.equal(
      r.stderr.trim(),
      'ERROR --allreduce-topology hierarchical needs several hosts with the same number (more than 1) of workers each; this run has 1 host with 2 workers (pass --allreduce-topology auto (hierarchical where the topology allows it) or flat)',
    );
  }
});
