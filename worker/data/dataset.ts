/**
 * What a training program needs from a dataset: fixed-length token samples, split into train and
 * validation. The model shifts internally (logits[:, :-1] against labels[:, 1:]), so a sample of
 * T tokens gives T-1 predictions; labels equal -100 are ignored.
 */

/** One sample; every array has length T = seqLen. */
export interface Sample {
  readonly inputIds: Int32Array;
  /** 1 = real token, 0 = padding (masked as a key, and its label should be -100). */
  readonly attentionMask: Int32Array;
  readonly labels: Int32Array;
}

/** An indexable list of samples; `get` is deterministic and cheap (no I/O). */
export interface SampleSet {
  readonly length: number;
  get(index: number): Sample;
}

export interface TokenDataset {
  /** e.g. "toy", "brown", "text:/path". */
  readonly name: string;
  /** One line for the log: corpus, tokenizer, vocabulary, sizes of the splits. */
  readonly description: string;
  /** The smallest --vocab-size that covers every token id of the dataset. */
  readonly minVocabSize: number;
  readonly train: SampleSet;
  readonly val: SampleSet;
}

/** Options every dataset loader receives (resolved training config). */
export interface DatasetOptions {
  readonly seqLen: number;
  readonly seed: number;
  readonly vocabSize: number;
  /** Where prepared token arrays are cached (e.g. data/cache). */
  readonly dataDir: string;
  /** Tokenizer name for text datasets, e.g. "byte". */
  readonly tokenizer: string;
}
