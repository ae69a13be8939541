/**
 * text_dataset on real files in a temporary folder: the split, window cutting, the token cache,
 * and each bad input. Expected streams are rebuilt from the files the tests write, following the
 * documented rules (every 10th document is validation; documents joined by a blank line).
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat, truncate, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConfigError, FileError, formatError, RosedistError } from '../../../shared/errors.js';
import { brownCorpusLocation } from '../../../worker/data/brown.js';
import type { DatasetOptions, SampleSet } from '../../../worker/data/dataset.js';
import { invalidUtf8Offset } from '../../../worker/data/text_files.js';
import {
  loadTextDataset,
  MAX_VAL_WINDOWS,
  VAL_EVERY,
  VAL_FRACTION,
  windowCount,
  WindowSet,
} from '../../../worker/data/text_dataset.js';

const FIXTURES = new URL('../../fixtures/data/', import.meta.url).pathname;
const T = 16;
let tmp = '';
let caches = 0;

function opts(over: Partial<DatasetOptions> = {}): DatasetOptions {
  return { seqLen: T, seed: 1, vocabSize: 256, dataDir: join(tmp, `cache${caches++}`), tokenizer: 'byte', ...over };
}

/** The stream a sample set covers: first window whole, then each next window less its first token. */
function covered(set: SampleSet): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < set.length; i++) {
    const s = set.get(i);
    assert.equal(s.inputIds.length, T);
    assert.deepEqual(s.labels, s.inputIds);
    assert.ok(s.attentionMask.every((m) => m === 1));
    parts.push(Buffer.from(Uint8Array.from(i === 0 ? s.inputIds : s.inputIds.subarray(1))));
  }
  return Buffer.concat(parts);
}

/** `expected` is covered in order, less a tail shorter than one stride (T-1). */
function assertCovers(set: SampleSet, expected: Buffer): void {
  const got = covered(set);
  assert.ok(expected.subarray(0, got.length).equals(got), 'windows overlap by one token and follow the stream');
  const tail = expected.length - got.length;
  assert.ok(tail >= 0 && tail < T - 1, `uncovered tail of ${tail} tokens`);
}

/** 23 documents (13 at the top, 10 in sub/), each naming itself, plus files that must be skipped. */
const DOCS = Array.from({ length: 23 }, (_, i) => {
  const id = String(i).padStart(2, '0');
  return { name: i < 13 ? `doc${id}.txt` : `sub/doc${id}.txt`, text: `<doc${id}> ${'lorem ipsum dolor '.repeat(4 + (i % 5))}\n` };
});

async function writeCorpus(dir: string): Promise<void> {
  await mkdir(join(dir, 'sub'), { recursive: true });
  for (const d of DOCS) await writeFile(join(dir, d.name), d.text);
  await writeFile(join(dir, '.hidden'), '<hidden> not a document');
  await writeFile(join(dir, 'sub', 'empty.txt'), '');
}

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'rosedist-text-'));
  await writeCorpus(join(tmp, 'corpus'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('windows', () => {
  it('cuts windows of T tokens with stride T-1 that cover the stream', () => {
    for (const n of [T, T + 1, 2 * T - 2, 2 * T - 1, 10 * T + 3]) {
      const stream = Int32Array.from({ length: n }, (_, i) => i % 256);
      const set = new WindowSet(stream, T, windowCount(n, T));
      assert.ok(set.length >= 1);
      assertCovers(set, Buffer.from(Uint8Array.from(stream)));
    }
    assert.equal(windowCount(T - 1, T), 0);
  });

  it('spreads a capped list of windows evenly, each at a multiple of T-1', () => {
    const stream = Int32Array.from({ length: 5000 }, (_, i) => i);
    const available = windowCount(stream.length, T);
    const set = new WindowSet(stream, T, 50);
    const starts = Array.from({ length: set.length }, (_, j) => set.get(j).inputIds[0]);
    assert.equal(starts[0], 0);
    for (let j = 1; j < starts.length; j++) {
      assert.ok(starts[j] > starts[j - 1] && starts[j] % (T - 1) === 0);
      assert.ok(starts[j] - starts[j - 1] <= Math.ceil(available / 50) * (T - 1));
    }
    assert.ok(starts[starts.length - 1] >= (available - Math.ceil(available / 50)) * (T - 1));
    assert.throws(() => set.get(50), RangeError);
  });
});

describe('split by document', () => {
  it('is the same for every seed and cache, every 10th document is validation', async () => {
    const spec = `text:${join(tmp, 'corpus')}`;
    const a = await loadTextDataset(spec, opts({ seed: 1 }));
    const b = await loadTextDataset(spec, opts({ seed: 12345 }));
    const names = DOCS.map((d) => d.name).sort();
    const valNames = names.filter((_, i) => i % VAL_EVERY === VAL_EVERY - 1);
    assert.deepEqual(a.documents.val, valNames);
    assert.deepEqual(a.documents.train, names.filter((n) => !valNames.includes(n)));
    assert.deepEqual(b.documents, a.documents);
    for (const [x, y] of [[a.train, b.train], [a.val, b.val]]) {
      assert.equal(x.length, y.length);
      for (let i = 0; i < x.length; i++) assert.deepEqual(x.get(i), y.get(i));
    }
    // Train: its documents joined by a blank line (the last document of the corpus is a train one).
    const text = (n: string) => DOCS.find((d) => d.name === n)!.text.trimEnd();
    assertCovers(a.train, Buffer.from(a.documents.train.map(text).join('\n\n')));
    // Val: each document with the separator that followed it in the corpus.
    assertCovers(a.val, Buffer.from(valNames.map((n) => `${text(n)}\n\n`).join('')));
    const trainText = covered(a.train).toString('latin1');
    assert.ok(!trainText.includes('<hidden>'));
    for (const n of valNames) assert.ok(!trainText.includes(text(n).slice(0, 7)), `${n} kept out of train`);
    assert.match(a.description, /23 documents \(21 train, 2 val/);
    assert.match(a.description, /tokenizer byte, vocabulary 256/);
  });

  it('splits a single file by position: the last 10% is validation', async () => {
    const d = await loadTextDataset(`text:${join(FIXTURES, 'small.txt')}`, opts());
    const bytes = Buffer.from((await readFile(join(FIXTURES, 'small.txt'), 'utf8')).trimEnd());
    const valStart = bytes.length - Math.floor(bytes.length * VAL_FRACTION);
    assert.deepEqual(d.documents, { train: ['small.txt'], val: [] });
    assertCovers(d.train, bytes.subarray(0, valStart));
    assertCovers(d.val, bytes.subarray(valStart));
    assert.equal(d.minVocabSize, 256);
  });

  it('caps validation at MAX_VAL_WINDOWS windows', async () => {
    const path = join(tmp, 'big.txt');
    await writeFile(path, Array.from({ length: 6000 }, (_, i) => `line ${i}`).join('\n'));
    const d = await loadTextDataset(`text:${path}`, opts());
    const valTokens = (await stat(path)).size * VAL_FRACTION;
    assert.ok(windowCount(valTokens, T) > MAX_VAL_WINDOWS);
    assert.equal(d.val.length, MAX_VAL_WINDOWS);
  });

  it('prepares brown: 500 documents, every 10th of cats.txt held out', async () => {
    const cats = await readFile(join(brownCorpusLocation().dir, 'cats.txt'), 'utf8');
    const names = cats.split('\n').filter((l) => l.trim()).map((l) => l.split(/\s+/)[0]).sort();
    const d = await loadTextDataset('brown', opts({ seqLen: 64 }));
    assert.deepEqual(d.documents.val, names.filter((_, i) => i % VAL_EVERY === VAL_EVERY - 1));
    assert.equal(d.val.length, MAX_VAL_WINDOWS);
    assert.match(d.description, new RegExp(`^brown: ${names.length} documents`));
    const sample = Buffer.from(Uint8Array.from(d.train.get(0).inputIds)).toString('latin1');
    assert.ok(sample.startsWith('The Fulton County Grand Jury said'), sample);
  });
});

describe('token cache', () => {
  const spec = () => `text:${join(tmp, 'corpus')}`;

  it('is built once, then read; a damaged file is rebuilt', async () => {
    const o = opts();
    const first = await loadTextDataset(spec(), o);
    assert.equal(first.cache.status, 'built');
    const built = await stat(first.cache.path);
    const second = await loadTextDataset(spec(), o);
    assert.equal(second.cache.status, 'hit');
    assert.equal((await stat(first.cache.path)).mtimeMs, built.mtimeMs, 'a hit does not rewrite the file');
    const same = (d: typeof first) => covered(d.train).equals(covered(first.train)) && covered(d.val).equals(covered(first.val));
    assert.ok(same(second));
    const damage: [string, () => Promise<void>][] = [
      ['truncated', () => truncate(first.cache.path, Math.floor(built.size / 2))],
      ['a flipped payload byte', async () => {
        const file = await readFile(first.cache.path);
        file[file.length - 10] ^= 0xff;
        await writeFile(first.cache.path, file);
      }],
      ['garbage', () => writeFile(first.cache.path, 'not a cache')],
    ];
    for (const [what, hurt] of damage) {
      await hurt();
      const again = await loadTextDataset(spec(), o);
      assert.equal(again.cache.status, 'rebuilt', what);
      assert.ok(same(again), what);
      assert.equal((await loadTextDataset(spec(), o)).cache.status, 'hit', `${what}: repaired`);
    }
  });

  it('reads tokens from the cache, keyed by file sizes and mtimes', async () => {
    const dir = join(tmp, 'keyed');
    await writeCorpus(dir);
    const o = opts();
    const file = join(dir, DOCS[0].name);
    const mtime = new Date('2020-01-01T00:00:00Z'); // whole seconds: utimes restores it exactly
    await utimes(file, mtime, mtime);
    const before = await loadTextDataset(`text:${dir}`, o);
    // Same size and mtime: the cache is used, so the old text is what the windows hold.
    await writeFile(file, DOCS[0].text.toUpperCase());
    await utimes(file, mtime, mtime);
    const cached = await loadTextDataset(`text:${dir}`, o);
    assert.equal(cached.cache.status, 'hit');
    assert.ok(covered(cached.train).equals(covered(before.train)));
    // A changed size is another key: rebuilt from the new text.
    await writeFile(file, `${DOCS[0].text.trimEnd()} and more\n`);
    const changed = await loadTextDataset(`text:${dir}`, o);
    assert.equal(changed.cache.status, 'built');
    assert.notEqual(changed.cache.path, before.cache.path);
    assert.ok(covered(changed.train).toString('latin1').includes('and more'));
  });
});

describe('bad input: one clear line each', () => {
  async function rejects(spec: string, over: Partial<DatasetOptions>, type: typeof RosedistError, pattern: RegExp): Promise<void> {
    await assert.rejects(loadTextDataset(spec, opts(over)), (e: unknown) => {
      assert.ok(e instanceof type, `${spec}: ${String(e)}`);
      const line = formatError(e);
      assert.ok(!line.includes('\n') && e.hint, line);
      assert.match(line, pattern);
      return true;
    });
  }

  it('missing path, empty file, empty folder', async () => {
    await rejects(`text:${join(tmp, 'nowhere.txt')}`, {}, FileError, /nowhere\.txt: no such file or folder/);
    await rejects(`text:${join(FIXTURES, 'empty.txt')}`, {}, FileError, /empty\.txt: the file is empty/);
    const emptyDir = join(tmp, 'empty-dir');
    await mkdir(join(emptyDir, 'nested'), { recursive: true });
    await rejects(`text:${emptyDir}`, {}, FileError, /no non-empty files/);
    await writeFile(join(emptyDir, 'nested', 'blank.txt'), '');
    await writeFile(join(emptyDir, '.hidden.txt'), 'skipped');
    await rejects(`text:${emptyDir}`, {}, FileError, /no non-empty files/);
  });

  it('non-UTF-8 bytes: names the file and the byte offset', async () => {
    const bytes = await readFile(join(FIXTURES, 'latin1.txt'));
    const offset = bytes.indexOf(0xe9); // the Latin-1 é; the ï before it is proper UTF-8
    await rejects(`text:${join(FIXTURES, 'latin1.txt')}`, {}, FileError, new RegExp(`latin1\\.txt: not UTF-8 .*offset ${offset}\\b`));
  });

  it('a corpus smaller than one window', async () => {
    await rejects(`text:${join(FIXTURES, 'small.txt')}`, { seqLen: 512 }, FileError, /fewer than one window of --seq-len 512/);
  });

  it('unknown dataset, tokenizer; too small --vocab-size or --seq-len', async () => {
    await rejects('wikipedia', {}, ConfigError, /unknown --dataset 'wikipedia'.*text:<path/);
    await rejects('text:', {}, ConfigError, /unknown --dataset 'text:'/);
    await rejects('brown', { tokenizer: 'wordpiece' }, ConfigError, /unknown --tokenizer 'wordpiece'/);
    await rejects('brown', { vocabSize: 255 }, ConfigError, /--vocab-size 255 .*\(256\).*--vocab-size 256/);
    await rejects('brown', { vocabSize: 50000, tokenizer: 'gpt2' }, ConfigError, /--vocab-size 50257/);
    await rejects('brown', { seqLen: 1 }, ConfigError, /--seq-len 1/);
  });
});

describe('gpt2 tokenizer through the dataset', () => {
  it('sets minVocabSize to its vocabulary', async () => {
    const d = await loadTextDataset(`text:${join(FIXTURES, 'small.txt')}`, opts({ tokenizer: 'gpt2', vocabSize: 50304, seqLen: 8 }));
    assert.equal(d.minVocabSize, 50257);
    assert.match(d.description, /tokenizer gpt2, vocabulary 50,257/);
  });
});

describe('invalidUtf8Offset', () => {
  it('agrees with TextDecoder on random bytes, and the prefix before it decodes', () => {
    let state = 12345;
    const next = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) >>> 24;
    const pool = [0x41, 0x80, 0xbf, 0xc2, 0xc3, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xa0, 0x9f, 0x8f, 0x90, 0xc0, 0xff];
    for (let n = 0; n < 3000; n++) {
      const bytes = Uint8Array.from({ length: next() % 7 }, () => pool[next() % pool.length]);
      const at = invalidUtf8Offset(bytes);
      let valid = true;
      try {
        new TextDecoder('utf-8', { fatal: true }).decode(bytes);
      } catch {
        valid = false;
      }
      assert.equal(at === -1, valid, Buffer.from(bytes).toString('hex'));
      if (at >= 0) new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, at));
    }
  });
});
