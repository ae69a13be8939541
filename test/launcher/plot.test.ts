import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import { runPlot } from '../../launcher/plot/main.js';
import { parseMetrics, type MetricsRecord } from '../../shared/metrics.js';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'rosedist-plot-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** Append one evaluation per `every` steps, as rank 0 of the trainer does (a JSON line each). */
function writeRun(file: string, o: { from?: number; steps: number; every: number; worldSize: number; decay: number; runId?: string }): MetricsRecord[] {
  const records: MetricsRecord[] = [];
  for (let step = o.from ?? 0; step <= o.steps; step += o.every) {
    const valLoss = 1.3 + 2.9 * Math.exp(-step / o.decay);
    const record: MetricsRecord = {
      step,
      train_loss: valLoss - 0.04,
      val_loss: valLoss,
      val_ppl: Math.exp(valLoss),
      val_tokens: 4096,
      tokens_seen: step * 2048 * o.worldSize,
      elapsed_s: step * 0.25,
      world_size: o.worldSize,
      backend: 'wasm',
      ...(o.runId ? { run_id: o.runId } : {}),
    };
    appendFileSync(file, `${JSON.stringify(record)}\n`);
    records.push(record);
  }
  return records;
}

/** runPlot with its output captured. */
async function plot(args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runPlot(args, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err };
}

/** Attribute values of the SVG elements whose `aria-roledescription` is `role` (Vega marks). */
function ariaLabels(svg: string, role: string): string[] {
  const labels: string[] = [];
  for (const m of svg.matchAll(/<path aria-label="([^"]*)" role="graphics-symbol" aria-roledescription="([^"]*)"/g)) {
    if (m[2] === role) labels.push(m[1]);
  }
  return labels;
}

/** "a: 1; b: x" → { a: '1', b: 'x' } */
function fields(label: string): Record<string, string> {
  return Object.fromEntries(label.split('; ').map((kv) => kv.split(': ') as [string, string]));
}

test('SVG of two runs: valid SVG, one line per run and split, every evaluation drawn', async () => {
  const a = join(dir, 'train_ddp.metrics.jsonl');
  const b = join(dir, 'b.metrics.jsonl');
  const recA = writeRun(a, { steps: 200, every: 20, worldSize: 1, decay: 60 });
  const recB = writeRun(b, { steps: 120, every: 10, worldSize: 2, decay: 30, runId: 'ddp-2ranks' });
  const out = join(dir, 'curves.svg');
  const r = await plot([a, b, '-o', out]);
  assert.equal(r.code, 0, r.err.join('\n'));
  assert.match(r.out[0], /wrote .*curves\.svg \(2 runs, 24 evaluations\)/);

  const svg = readFileSync(out, 'utf8');
  // resvg parses the document as XML + SVG and throws on anything malformed.
  const parsed = new Resvg(svg);
  const [, w, h] = /^<svg [^>]*width="(\d+)" height="(\d+)"/.exec(svg) ?? [];
  assert.deepEqual([parsed.width, parsed.height], [Number(w), Number(h)]);

  // Labels: the file name when there is no run_id, else the run_id.
  const lines = ariaLabels(svg, 'line mark').map(fields);
  const series = lines.map((f) => `${f.run}/${f.split ?? 'ppl'}`).sort();
  assert.deepEqual(series, ['ddp-2ranks/ppl', 'ddp-2ranks/train', 'ddp-2ranks/val', 'train_ddp/ppl', 'train_ddp/train', 'train_ddp/val']);
  for (const label of ['train_ddp', 'ddp-2ranks', 'step (optimizer steps)', 'loss (nats/token)', 'val perplexity (log scale)']) {
    assert.ok(svg.includes(`>${label}</text>`), `text "${label}" in the picture`);
  }

  // Each record is a point of its run in both panels, at the values the file holds.
  const points = ariaLabels(svg, 'point').map(fields);
  assert.equal(points.length, 3 * (recA.length + recB.length));
  const near = (text: string | undefined, v: number): boolean => text !== undefined && Math.abs(Number(text) - v) <= 1e-6 * Math.abs(v);
  for (const [run, records] of [
    ['train_ddp', recA],
    ['ddp-2ranks', recB],
  ] as const) {
    for (const rec of records) {
      const at = points.filter((p) => p.run === run && Number(p['step (optimizer steps)']) === rec.step);
      assert.ok(
        at.some((p) => p.split === 'train' && near(p['loss (nats/token)'], rec.train_loss)),
        `${run} train loss at step ${rec.step}`,
      );
      assert.ok(
        at.some((p) => p.split === 'val' && near(p['loss (nats/token)'], rec.val_loss)),
        `${run} val loss at step ${rec.step}`,
      );
      assert.ok(
        at.some((p) => near(p['val perplexity (log scale)'], rec.val_ppl)),
        `${run} val ppl at step ${rec.step}`,
      );
    }
  }
});

test('PNG: signature and dimensions twice the SVG size', async () => {
  const a = join(dir, 'png.metrics.jsonl');
  writeRun(a, { steps: 50, every: 10, worldSize: 1, decay: 20 });
  const svgOut = join(dir, 'same.svg');
  const pngOut = join(dir, 'nested', 'dir', 'curves.png');
  assert.equal((await plot([a, '-o', svgOut])).code, 0);
  const r = await plot([a, '-o', pngOut]);
  assert.equal(r.code, 0, r.err.join('\n'));
  const png = readFileSync(pngOut);
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  assert.equal(png.toString('latin1', 12, 16), 'IHDR');
  const [, w, h] = /^<svg [^>]*width="(\d+)" height="(\d+)"/.exec(readFileSync(svgOut, 'utf8')) ?? [];
  assert.deepEqual([png.readUInt32BE(16), png.readUInt32BE(20)], [2 * Number(w), 2 * Number(h)]);
});

test('a resumed run that repeats steps is drawn once per step, latest record winning', async () => {
  const f = join(dir, 'resumed.metrics.jsonl');
  writeRun(f, { steps: 40, every: 10, worldSize: 1, decay: 20 });
  // The second attempt restarted from the step-20 checkpoint and evaluated steps 20..40 again.
  const again = writeRun(f, { from: 20, steps: 40, every: 10, worldSize: 1, decay: 10 });
  assert.equal(parseMetrics(readFileSync(f, 'utf8')).length, 8);
  const out = join(dir, 'resumed.svg');
  assert.equal((await plot([f, '-o', out])).code, 0);
  const points = ariaLabels(readFileSync(out, 'utf8'), 'point')
    .map(fields)
    .filter((p) => p.split === 'val');
  assert.deepEqual(
    points.map((p) => Number(p['step (optimizer steps)'])),
    [0, 10, 20, 30, 40],
  );
  for (const rec of again) {
    const p = points.find((q) => Number(q['step (optimizer steps)']) === rec.step);
    assert.ok(p && Math.abs(Number(p['loss (nats/token)']) - rec.val_loss) < 1e-9, `step ${rec.step} from the second attempt`);
  }
});

test('bad input: one line naming the file (and line) and the fix, exit 2', async () => {
  const good = join(dir, 'good.metrics.jsonl');
  writeRun(good, { steps: 20, every: 10, worldSize: 1, decay: 10 });
  const empty = join(dir, 'empty.metrics.jsonl');
  writeFileSync(empty, '\n');
  const bad = join(dir, 'bad.metrics.jsonl');
  writeFileSync(bad, `${readFileSync(good, 'utf8')}{"step": 30, "train_loss": 1.0}\n`);
  const torn = join(dir, 'torn.metrics.jsonl');
  writeFileSync(torn, `${readFileSync(good, 'utf8')}{"step": 3`);
  const missing = join(dir, 'nope.metrics.jsonl');
  const cases: [string[], RegExp][] = [
    [[missing], new RegExp(`${missing}: no such file \\(pass a metrics file`)],
    [[empty], new RegExp(`${empty}: no evaluations in the file \\(`)],
    [[good, bad], new RegExp(`${bad}:4: field "val_loss" is missing or not a number \\(each line must be`)],
    [[torn], new RegExp(`${torn}:4: not valid JSON`)],
    [[dir], /is a directory/],
    [[good, '-o', join(dir, 'x.pdf')], /-o .*x\.pdf: unknown picture type "\.pdf" \(end the file name in \.svg or \.png\)/],
    [[good, '-o', join(dir, 'noext')], /unknown picture type "\(none\)"/],
    [[], /rosedist plot: Not enough non-option arguments.*\(usage: rosedist plot/],
    [[good, '--colour', 'red'], /Unknown argument/],
  ];
  for (const [args, expected] of cases) {
    const r = await plot(args);
    assert.equal(r.code, 2, `exit code for ${args.join(' ')}`);
    assert.deepEqual(r.out, []);
    assert.equal(r.err.length, 1, `one line for ${args.join(' ')}: ${r.err.join(' | ')}`);
    assert.ok(!r.err[0].includes('\n') && !r.err[0].includes('    at '), 'no stack trace');
    assert.match(r.err[0], expected);
  }
});

test('--help prints the usage and exits 0', async () => {
  const r = await plot(['--help']);
  assert.equal(r.code, 0);
  assert.match(r.out.join('\n'), /rosedist plot <metrics\.jsonl>\.\.\. \[-o file\.svg\|file\.png\]/);
});

test('a file that two runs appended to is drawn as two runs, by run_id (issue 13, #9)', async () => {
  const f = join(dir, 'reused.metrics.jsonl');
  writeRun(f, { steps: 20, every: 10, worldSize: 1, decay: 20, runId: 'first' });
  writeRun(f, { steps: 20, every: 10, worldSize: 2, decay: 5, runId: 'second' });
  const out = join(dir, 'reused.svg');
  const r = await plot([f, '-o', out]);
  assert.equal(r.code, 0, r.err.join('\n'));
  assert.deepEqual(r.out, [`wrote ${out} (2 runs, 6 evaluations)`], 'same steps, different runs: nothing merged');
  const val = ariaLabels(readFileSync(out, 'utf8'), 'point')
    .map(fields)
    .filter((p) => p.split === 'val');
  assert.deepEqual(val.map((p) => `${p.run}@${p['step (optimizer steps)']}`).sort(), ['first@0', 'first@10', 'first@20', 'second@0', 'second@10', 'second@20']);
});

test('repeated steps of one run and non-finite losses are named in a note, not dropped silently', async () => {
  const f = join(dir, 'noted.metrics.jsonl');
  writeRun(f, { steps: 30, every: 10, worldSize: 1, decay: 20, runId: 'r1' });
  writeRun(f, { from: 20, steps: 30, every: 10, worldSize: 1, decay: 20, runId: 'r1' });
  appendFileSync(
    f,
    `${JSON.stringify({ step: 40, train_loss: null, skipped: true, val_loss: null, val_ppl: null, val_tokens: 1, tokens_seen: 1, elapsed_s: 1, world_size: 1, backend: 'wasm', run_id: 'r1' })}\n`,
  );
  const r = await plot([f, '-o', join(dir, 'noted.svg')]);
  assert.equal(r.code, 0, r.err.join('\n'));
  assert.deepEqual(r.out.slice(1), [
    'note: run r1 evaluated steps 20, 30 more than once (a restarted attempt resumed from an earlier checkpoint): the latest record of each is drawn',
    'note: run r1 has non-finite losses at step 40: not drawn',
  ]);
});
