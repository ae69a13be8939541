/**
 * scripts/bench_allreduce.ts end to end: two real ranks on both data transports, a tiny size, and
 * the Gloo anchor looked for beside the checkout (../shared/anchors) or where --anchors says.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { packagePath } from '../../shared/runtime.js';
import { runTsProgram, type ProcessExit } from '../../shared/subprocess.js';

const dir = mkdtempSync(join(tmpdir(), 'rosedist-bench-allreduce-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function bench(args: string[]): Promise<ProcessExit> {
  return runTsProgram(packagePath('scripts/bench_allreduce.ts'), args);
}

describe('bench:allreduce', () => {
  it('the Gloo anchor is looked for beside the checkout, not at a fixed path', async () => {
    const r = await bench(['--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.includes(packagePath('../shared/anchors')), r.stdout);
  });

  it('2 ranks, both transports, p50 and p90 per size; without anchors at --anchors, one line says Gloo is skipped', async () => {
    const json = join(dir, 'ours.json');
    const empty = mkdtempSync(join(dir, 'anchors-'));
    const r = await bench(['--nproc', '2', '--sizes', '4K,256K', '--iters', '6', '--transport', 'both', '--gloo', '--anchors', empty, '--json', json]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`Gloo anchor skipped: no Gloo anchor at ${empty} \\(pass --anchors DIR\\)`));
    assert.match(r.stdout, /rosedist ring all-reduce \(stream sockets\), world size 2, round 1/);
    assert.match(r.stdout, /rosedist ring all-reduce \(ZeroMQ\), world size 2, round 1/);
    assert.match(r.stdout, /\| 256 KiB \| [\d.]+ \([\d.]+–[\d.]+\) \| [\d.]+ \| [\d.]+ \| [\d.]+ \([\d.]+–[\d.]+\) \|/);
    const out = JSON.parse(readFileSync(json, 'utf8')) as {
      world_size: number;
      rows: { bytes: number; median_ms: number; p90_ms: number; correct: boolean }[];
    };
    assert.equal(out.world_size, 2);
    assert.deepEqual(
      out.rows.map((row) => row.bytes),
      [4096, 262144],
    );
    for (const row of out.rows) {
      assert.ok(row.correct);
      assert.ok(row.median_ms > 0 && row.p90_ms >= row.median_ms, JSON.stringify(row));
    }
  });

  it('--topology flat,hierarchical on 2 pretend hosts × 2: both interleaved, correct, with the flat / hierarchical ratio', async () => {
    const r = await bench([
      '--nproc',
      '2',
      '--loopback-hosts',
      '2',
      '--topology',
      'flat,hierarchical',
      '--sizes',
      '4K,256K',
      '--iters',
      '4',
      '--transport',
      'zmq',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /rosedist ring all-reduce \(ZeroMQ\), world size 4 \(2 pretend hosts on loopback\), round 1/);
    assert.match(r.stdout, /rosedist hierarchical all-reduce \(within host, across hosts, within host: subgroups over ZeroMQ; world ZeroMQ\), world size 4/);
    assert.doesNotMatch(r.stdout, /\| false \|/);
    assert.match(r.stdout, /\| zmq: flat \/ hierarchical p50 \|/);
    assert.match(r.stdout, /\| 256 KiB \|( [\d.]+ \([\d.]+–[\d.]+\) \| [\d.]+ \| [\d.]+ \|){2} [\d.]+ \|/);
  });

  it('--topology hierarchical on one host: the ranks stop naming the shape', async () => {
    const r = await bench(['--nproc', '2', '--topology', 'hierarchical', '--sizes', '4K', '--iters', '2']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /this run has 1 host with 2 workers/);
  });
});
