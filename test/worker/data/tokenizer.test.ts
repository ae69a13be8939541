import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { ConfigError, formatError } from '../../../shared/errors.js';
import { createTokenizer, TOKENIZER_NAMES } from '../../../worker/data/tokenizer.js';

const SMALL = new URL('../../fixtures/data/small.txt', import.meta.url);

describe('byte tokenizer', () => {
  it('encodes to the UTF-8 bytes and decodes back', async () => {
    const t = await createTokenizer('byte');
    const text = await readFile(SMALL, 'utf8');
    const ids = t.encode(text);
    assert.deepEqual(Array.from(ids), Array.from(Buffer.from(text, 'utf8')));
    assert.ok(ids.length > text.length, 'the fixture has multi-byte characters');
    assert.equal(t.decode(ids), text);
    assert.equal(t.vocabSize, 256);
    assert.equal(t.decode(t.separator), '\n\n');
  });
});

describe('gpt2 tokenizer (gpt-tokenizer, offline)', () => {
  it('round-trips text with ids inside its vocabulary, shorter than bytes', async () => {
    const t = await createTokenizer('gpt2');
    const text = await readFile(SMALL, 'utf8');
    const ids = t.encode(text);
    assert.equal(t.decode(ids), text);
    assert.ok(ids.every((id) => id >= 0 && id < t.vocabSize));
    assert.ok(ids.length < Buffer.byteLength(text) / 2, 'BPE merges English into multi-byte tokens');
  });

  it('separates documents with <|endoftext|>, the last id, and treats its text as plain text', async () => {
    const t = await createTokenizer('gpt2');
    assert.deepEqual(t.separator, [t.vocabSize - 1]);
    assert.equal(t.decode(t.separator), '<|endoftext|>');
    const ids = t.encode('a <|endoftext|> b');
    assert.ok(!ids.includes(t.vocabSize - 1));
    assert.equal(t.decode(ids), 'a <|endoftext|> b');
    assert.match(t.cacheId, /gpt-tokenizer-\d+\.\d+\.\d+/);
  });
});

describe('createTokenizer', () => {
  it('rejects an unknown name with a ConfigError naming --tokenizer and the choices', async () => {
    await assert.rejects(createTokenizer('sentencepiece'), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      const line = formatError(e);
      assert.match(line, /--tokenizer 'sentencepiece'/);
      for (const name of TOKENIZER_NAMES) assert.ok(line.includes(name));
      return true;
    });
  });
});
