/**
 * The tiny GPT that the multi-process tests and cluster checks train: one block of width 16 over
 * 8-token sequences, seconds per run on the cpu backend, so that a test's time goes to what it
 * checks (processes, sockets, files), not to arithmetic.
 */

/** Flag values by name (without the leading dashes), in the order they are written. */
export type FlagValues = Readonly<Record<string, string | number>>;

const TINY_GPT: FlagValues = {
  'vocab-size': 64,
  'max-position-embeddings': 16,
  'n-layers': 1,
  'n-heads': 2,
  'd-model': 16,
  'd-ff': 32,
  'seq-len': 8,
  backend: 'cpu',
};

/** `{ 'batch-size': 2 }` → `['--batch-size', '2']`. */
export function flags(values: FlagValues): string[] {
  return Object.entries(values).flatMap(([name, value]) => [`--${name}`, String(value)]);
}

/** The tiny GPT's flags with `extra` added (a name of the tiny GPT's takes the value in `extra`). */
export function tinyGpt(extra: FlagValues = {}): string[] {
  return flags({ ...TINY_GPT, ...extra });
}
