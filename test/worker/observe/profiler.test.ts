import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileError } from '../../../shared/errors.js';
import { packagePath, tsNodeArgs } from '../../../shared/runtime.js';
import { runProcess } from '../../../shared/subprocess.js';
import { createMemoryGroups } from '../../../worker/comm/memory_group.js';
import type { ProcessGroup } from '../../../worker/comm/process_group.js';
import { PHASES, Profiler, gatherEvents, mergeTraces, writeTrace, type TraceEvent } from '../../../worker/observe/profiler.js';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'rosedist-profiler-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Two steps of a training loop as the trainer records them; rank `slowRank` loads data slowly. */
async function trainLoop(pg: ProcessGroup, prof: Profiler, slowRank: number): Promise<void> {
  const grads = new Float32Array(8).fill(pg.rank);
  for (let step = 1; step <= 2; step += 1) {
    prof.setStep(step);
    await prof.span('data', () => sleep(pg.rank === slowRank ? 25 : 1));
    prof.begin('forward_backward');
    await sleep(2);
    prof.end('forward_backward');
    await prof.span('grad_copy', () => grads.fill(pg.rank));
    await prof.span('allreduce', () => pg.allReduce(grads));
    await prof.span('optimizer', () => sleep(1));
  }
  await prof.span('eval', () => sleep(2));
  await prof.span('checkpoint', () => sleep(1));
}

/** What the Chrome trace viewer needs of each event. */
function assertSchema(e: TraceEvent): void {
  assert.equal(typeof e.name, 'string');
  assert.ok(Number.isInteger(e.pid) && e.pid >= 0 && Number.isInteger(e.tid), JSON.stringify(e));
  assert.ok(Number.isFinite(e.ts) && e.ts >= 0);
  if (e.ph === 'X') {
    assert.ok(PHASES.includes(e.name as never), e.name);
    assert.ok(typeof e.dur === 'number' && Number.isFinite(e.dur) && e.dur >= 0, JSON.stringify(e));
    assert.ok(Number.isInteger(e.args?.step), 'X events carry the step');
  } else {
    assert.equal(e.ph, 'M');
    assert.ok(['process_name', 'process_sort_index', 'thread_name'].includes(e.name));
    assert.ok(e.args && Object.keys(e.args).length === 1);
  }
}

test('3 ranks: gathered, merged and written; schema, every phase per rank, ordering, waiting', async () => {
  const worldSize = 3;
  const slowRank = 2;
  // N ranks in one process (worker/comm/memory_group.ts): an early rank's collective really waits for a late one.
  const pgs = createMemoryGroups(worldSize, { collectiveTimeoutMs: 5000 });
  const profs = pgs.map((pg) => new Profiler(pg.rank, true));
  let gathered: TraceEvent[][][];
  try {
    await Promise.all(pgs.map((pg, r) => trainLoop(pg, profs[r], slowRank)));
    gathered = await Promise.all(pgs.map((pg, r) => gatherEvents(pg, profs[r].events())));
  } finally {
    await Promise.all(pgs.map((pg) => pg.close()));
  }
  // Every rank receives every rank's list, each equal to what that rank recorded.
  for (const g of gathered)
    assert.deepEqual(
      g,
      profs.map((p) => p.events()),
    );

  const file = join(dir, 'sub', 'trace.json');
  await writeTrace(file, mergeTraces(gathered[0]));
  assert.deepEqual(readdirSync(join(dir, 'sub')), ['trace.json'], 'no temporary file left');
  const trace = JSON.parse(readFileSync(file, 'utf8')) as { traceEvents: TraceEvent[]; displayTimeUnit: string };
  assert.equal(trace.displayTimeUnit, 'ms');
  trace.traceEvents.forEach(assertSchema);

  const complete = trace.traceEvents.filter((e) => e.ph === 'X');
  for (let rank = 0; rank < worldSize; rank += 1) {
    const names = trace.traceEvents.filter((e) => e.ph === 'M' && e.pid === rank && e.name === 'process_name').map((e) => e.args?.name);
    assert.deepEqual(names, [`rank ${rank}`]);
    const mine = complete.filter((e) => e.pid === rank);
    assert.deepEqual([...new Set(mine.map((e) => e.name))].sort(), [...PHASES].sort(), `every phase on rank ${rank}`);
    // The loop is sequential: each event starts after the previous one ended (ts is rounded to 1 µs).
    for (let i = 1; i < mine.length; i += 1) assert.ok(mine[i].ts >= mine[i - 1].ts + (mine[i - 1].dur ?? 0) - 1, `${mine[i - 1].name} then ${mine[i].name}`);
  }
  // Metadata first, then complete events by start time.
  const firstX = trace.traceEvents.findIndex((e) => e.ph === 'X');
  assert.ok(trace.traceEvents.slice(firstX).every((e) => e.ph === 'X'));
  for (let i = 1; i < complete.length; i += 1) assert.ok(complete[i].ts >= complete[i - 1].ts);

  // Who waits for whom: no rank's all-reduce of a step ends before the slow rank's one began.
  for (const step of [1, 2]) {
    const ar = complete.filter((e) => e.name === 'allreduce' && e.args?.step === step);
    assert.equal(ar.length, worldSize);
    const slowStart = ar.find((e) => e.pid === slowRank)!.ts;
    for (const e of ar) assert.ok(e.ts + (e.dur ?? 0) >= slowStart - 1, `rank ${e.pid} step ${step} waited for rank ${slowRank}`);
  }
});

test('timestamps line up across processes (wall-clock µs)', async () => {
  const url = new URL(`file://${packagePath('worker/observe/profiler.ts')}`).href;
  const script = `const { Profiler } = await import(${JSON.stringify(url)});
    const p = new Profiler(1, true);
    await p.span('data', () => new Promise((r) => setTimeout(r, 5)));
    process.stdout.write(JSON.stringify(p.events()));`;
  const parent = new Profiler(0, true);
  parent.begin('eval');
  parent.end('eval');
  const childRun = await runProcess(process.execPath, [...tsNodeArgs(), '--input-type=module', '-e', script], { stderr: 'inherit' });
  assert.equal(childRun.code, 0, 'child exit code');
  const childOut = childRun.stdout;
  parent.begin('checkpoint');
  parent.end('checkpoint');
  const [before, afterEv] = parent.events();
  const [child] = JSON.parse(childOut) as TraceEvent[];
  assert.equal(child.pid, 1);
  // The child's span happened strictly between the parent's two events (1 ms slack for clock rounding).
  assert.ok(child.ts >= before.ts + (before.dur ?? 0) - 1000, `child starts after the parent's first event: ${child.ts - before.ts} µs`);
  assert.ok(child.ts + (child.dur ?? 0) <= afterEv.ts + 1000, `child ends before the parent's second event: ${afterEv.ts - child.ts} µs`);
});

test('a disabled profiler records nothing and still runs the work', async () => {
  const p = new Profiler(0, false);
  p.begin('data');
  p.begin('data');
  p.end('optimizer');
  assert.equal(await p.span('eval', () => 42), 42);
  await assert.rejects(
    p.span('eval', () => Promise.reject(new Error('boom'))),
    /boom/,
  );
  assert.deepEqual(p.events(), []);
});

test('span records a phase that throws; mismatched begin/end are reported', async () => {
  const p = new Profiler(4, true);
  await assert.rejects(
    p.span('checkpoint', async () => {
      throw new Error('disk full');
    }),
    /disk full/,
  );
  assert.deepEqual(
    p.events().map((e) => [e.name, e.pid]),
    [['checkpoint', 4]],
  );
  assert.throws(() => p.end('data'), /end\("data"\) without begin\(\) on rank 4/);
  p.begin('data');
  assert.throws(() => p.begin('data'), /begun twice/);
});

test('events past maxEvents are counted, not stored', () => {
  const p = new Profiler(0, true, 3);
  for (let i = 0; i < 5; i += 1) {
    p.begin('optimizer');
    p.end('optimizer');
  }
  assert.equal(p.events().length, 3);
  assert.equal(p.dropped, 2);
});

test('mergeTraces rejects an event filed under another rank; writeTrace reports an unwritable path', async () => {
  const p = new Profiler(1, true);
  p.begin('data');
  p.end('data');
  assert.throws(() => mergeTraces([p.events()]), /pid 1 was given as rank 0/);
  const blocker = join(dir, 'a-file');
  writeFileSync(blocker, 'x');
  const target = join(blocker, 'trace.json');
  await assert.rejects(
    writeTrace(target, mergeTraces([[], p.events()])),
    (e: unknown) => e instanceof FileError && /cannot write the trace .*trace\.json: E(EXIST|NOTDIR)/.test(e.message),
  );
  assert.equal(existsSync(`${target}.${process.pid}.tmp`), false);
});

test('background spans (overlap’s bucket all-reduces) go on their own row, named only where a rank has some', () => {
  const p = new Profiler(1, true);
  p.setStep(7);
  p.background('allreduce_bucket', 10, 12.5, { bucket: 2, bytes: 64 });
  const [e] = p.events();
  assert.equal(e?.tid, 1);
  assert.equal(e?.dur, 2500); // µs
  assert.deepEqual(e?.args, { step: 7, bucket: 2, bytes: 64 });
  const merged = mergeTraces([[], p.events()]);
  const rows = merged.traceEvents.filter((x) => x.name === 'thread_name').map((x) => [x.pid, x.tid]);
  assert.deepEqual(rows, [
    [0, 0],
    [1, 0],
    [1, 1],
  ]);
  const off = new Profiler(0, false);
  off.background('allreduce_bucket', 0, 1);
  assert.equal(off.events().length, 0);
});
