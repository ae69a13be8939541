/**
 * `loadDataset(spec, opts)`: the dataset named by --dataset.
 *   toy            the original's 1000 random-token samples
 *   toy:<samples>  the same with another sample count (tests use odd split sizes)
 *   brown | text:<path>   real text, through text_dataset.ts
 * Rejects (ConfigError) a dataset whose tokens do not fit --vocab-size.
 */
import { ConfigError } from '../../shared/errors.js';
import type { DatasetOptions, TokenDataset } from './dataset.js';
import { loadTextDataset } from './text_dataset.js';
import { toyDataset } from './toy.js';

export async function loadDataset(spec: string, opts: DatasetOptions): Promise<TokenDataset> {
  const toy = /^toy(?::(\d+))?$/.exec(spec);
  let dataset: TokenDataset;
  if (toy) {
    const samples = toy[1] === undefined ? undefined : Number(toy[1]);
    if (samples !== undefined && samples < 5) {
      throw new ConfigError(`--dataset ${spec} has too few samples to split 80/20`, 'pass --dataset toy:<samples> with 5 or more');
    }
    dataset = toyDataset(opts, samples);
  } else if (spec === 'brown' || spec.startsWith('text:')) {
    dataset = await loadTextDataset(spec, opts);
  } else {
    throw new ConfigError(`--dataset ${spec} is not a dataset`, 'pass --dataset toy, toy:<samples>, brown or text:<path>');
  }
  if (dataset.minVocabSize > opts.vocabSize) {
    throw new ConfigError(
      `dataset ${dataset.name} has token ids up to ${dataset.minVocabSize - 1}, beyond --vocab-size ${opts.vocabSize}`,
      `pass --vocab-size ${dataset.minVocabSize} or more`,
    );
  }
  if (dataset.val.length === 0) {
    throw new ConfigError(`dataset ${dataset.name} has an empty validation split`, 'use a larger dataset');
  }
  return dataset;
}
