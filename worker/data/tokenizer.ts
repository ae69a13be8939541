/**
 * Tokenizers for text datasets: text ⇄ token ids.
 *
 * - `byte`: the UTF-8 bytes of the text, vocabulary 256, nothing to train or load. The default.
 * - `gpt2`: GPT-2's byte-level BPE (the r50k_base ranks, vocabulary 50257), from the npm package
 *   gpt-tokenizer, which ships its ranks inside the package: it works offline and loads nothing
 *   at run time. Imported lazily (it takes ~70 ms and ~100 MB), and only here.
 *
 * Documents are joined with `separator` (GPT-2's <|endoftext|>, as nanoGPT does; a blank line
 * for bytes, which have no spare id), so a window that crosses a document boundary says so.
 */
import { createRequire } from 'node:module';
import { ConfigError } from '../../shared/errors.js';

export interface Tokenizer {
  /** The --tokenizer name, e.g. "byte". */
  readonly name: string;
  /** Ids are in [0, vocabSize); the smallest --vocab-size a model needs for this tokenizer. */
  readonly vocabSize: number;
  /** Identifies the exact vocabulary (name and library version), for cache keys. */
  readonly cacheId: string;
  /** Ids placed between two documents. */
  readonly separator: readonly number[];
  /** Pure and synchronous; any string (special-token text is encoded as plain text). */
  encode(text: string): Int32Array;
  /** Inverse of encode for whole sequences; ids from a window may cut a character (shown as U+FFFD). */
  decode(ids: ArrayLike<number>): string;
}

/** Names accepted by --tokenizer, the default first. */
export const TOKENIZER_NAMES = ['byte', 'gpt2'] as const;
export type TokenizerName = (typeof TOKENIZER_NAMES)[number];

/** Resolves the named tokenizer; rejects an unknown name with a ConfigError naming --tokenizer. */
export async function createTokenizer(name: string): Promise<Tokenizer> {
  switch (name) {
    case 'byte':
      return byteTokenizer();
    case 'gpt2':
      return gpt2Tokenizer();
    default:
      throw new ConfigError(
        `unknown --tokenizer '${name}'`,
        `use one of: ${TOKENIZER_NAMES.join(', ')}`,
      );
  }
}

function byteTokenizer(): Tokenizer {
  const encoder = new TextEncoder();
  const decoder = new TextDecoder('utf-8');
  return {
    name: 'byte',
    vocabSize: 256,
    cacheId: 'byte',
    separator: Array.from(encoder.encode('\n\n')),
    encode: (text) => Int32Array.from(encoder.encode(text)),
    decode: (ids) => decoder.decode(Uint8Array.from(ids as ArrayLike<number>)),
  };
}

async function gpt2Tokenizer(): Promise<Tokenizer> {
  const bpe = await import('gpt-tokenizer/encoding/r50k_base');
  const version = packageVersion('gpt-tokenizer');
  // Special-token text in a user's file is plain text, not a control token (the default throws).
  const plain = { disallowedSpecial: new Set<string>() };
  const endOfText = bpe.encode(bpe.EndOfText, { allowedSpecial: new Set([bpe.EndOfText]) });
  return {
    name: 'gpt2',
    vocabSize: bpe.vocabularySize,
    cacheId: `gpt2-r50k_base@gpt-tokenizer-${version}`,
    separator: endOfText,
    encode: (text) => Int32Array.from(bpe.encode(text, plain)),
    decode: (ids) => bpe.decode(Array.from(ids as ArrayLike<number>)),
  };
}

/** The installed version of a package, from its package.json (exported by gpt-tokenizer). */
function packageVersion(pkg: string): string {
  const json = createRequire(import.meta.url)(`${pkg}/package.json`) as { version?: string };
  return json.version ?? 'unknown';
}
