/**
 * A batch as the GPT reads it: the checks of a batch against the model's config, the rows whose
 * next token the loss predicts (labels not IGNORE_INDEX), the batch's constant tensors (token ids,
 * attention mask bias) and the dropout masks, one seeded stream per site.
 *
 * Apart from gpt.ts because both models read a batch this way: GPT (gpt.ts) and the
 * tensor-parallel TensorParallelGPT (tp_gpt.ts), which draws the dense model's masks from the same
 * streams and computes its loss over the same rows.
 */
import { RosedistError } from '../../shared/errors.js';
import type { Batch } from '../data/collate.js';
import { streamSeed } from '../rng.js';
import { tf } from '../tf.js';
import { attentionMaskBias, type AttentionShape } from './attention.js';
import { dropoutMaskTensor } from './ops.js';
import type { GPTConfig } from './params.js';

/** The label value that the loss skips, as PyTorch's cross_entropy ignore_index. */
export const IGNORE_INDEX = -100;

/**
 * Where dropout is applied, as in the original: the sum of the embeddings, and in each block the
 * attention weights (after softmax), the attention output and the MLP output.
 */
export type DropoutSite = { readonly kind: 'embeddings' } | { readonly kind: 'attention_weights' | 'attention_output' | 'mlp_output'; readonly layer: number };

/**
 * The key of a site's mask stream (streamSeed(dropoutSeed, key)). Fixed: changing a key changes the
 * numbers of every seeded run.
 */
export function dropoutStream(site: DropoutSite): number {
  switch (site.kind) {
    case 'embeddings':
      return 0;
    case 'attention_weights':
      return 3 * site.layer + 1;
    case 'attention_output':
      return 3 * site.layer + 2;
    case 'mlp_output':
      return 3 * site.layer + 3;
  }
}

/** Rows of the flattened [B*T] positions whose next label is predicted, and those labels. */
export interface LossRows {
  readonly rows: Int32Array;
  readonly targets: Int32Array;
}

/**
 * Positions t < T-1 whose label at t+1 is not ignored: rows b*T+t and their targets, after
 * checkBatch. GPT and TensorParallelGPT (tp_gpt.ts) compute their losses over these rows.
 */
export function lossRows(batch: Batch, config: GPTConfig): LossRows {
  checkBatch(batch, config, true);
  const { batchSize: B, seqLen: T, labels } = batch;
  const rows: number[] = [];
  const targets: number[] = [];
  for (let b = 0; b < B; b++) {
    for (let t = 0; t + 1 < T; t++) {
      const y = labels[b * T + t + 1] as number;
      if (y === IGNORE_INDEX) continue;
      rows.push(b * T + t);
      targets.push(y);
    }
  }
  return { rows: Int32Array.from(rows), targets: Int32Array.from(targets) };
}

/** One clear error for a malformed batch (bad ids would otherwise read garbage on wasm). */
export function checkBatch(batch: Batch, config: GPTConfig, withLabels: boolean): void {
  const { batchSize: B, seqLen: T } = batch;
  const { vocabSize: V, maxPositionEmbeddings: P } = config;
  if (!Number.isInteger(B) || B < 1 || !Number.isInteger(T) || T < 1) {
    throw new RosedistError(`batch: batchSize and seqLen must be positive integers, got ${B} and ${T}`);
  }
  if (T > P) {
    throw new RosedistError(`batch: seqLen ${T} exceeds maxPositionEmbeddings ${P}`, 'use --seq-len at most --max-position-embeddings');
  }
  const arrays: [string, Int32Array][] = [
    ['inputIds', batch.inputIds],
    ['attentionMask', batch.attentionMask],
  ];
  if (withLabels) arrays.push(['labels', batch.labels]);
  for (const [name, a] of arrays) {
    if (a.length !== B * T) throw new RosedistError(`batch: ${name} has ${a.length} elements, expected B*T = ${B * T}`);
  }
  const badId = batch.inputIds.findIndex((id) => id < 0 || id >= V);
  if (badId >= 0) {
    throw new RosedistError(
      `batch: inputIds[${badId}] = ${batch.inputIds[badId]} is outside the vocabulary [0, ${V})`,
      'check --vocab-size against the dataset',
    );
  }
  if (withLabels) {
    const badLabel = batch.labels.findIndex((y) => y !== IGNORE_INDEX && (y < 0 || y >= V));
    if (badLabel >= 0) {
      throw new RosedistError(`batch: labels[${badLabel}] = ${batch.labels[badLabel]} is neither ${IGNORE_INDEX} nor in [0, ${V})`);
    }
  }
}

/** The constant tensors of one batch: made before the taped function so they outlive backprop. */
export interface BatchTensors {
  readonly ids: tf.Tensor1D; // [B*T] token ids
  readonly maskBias: tf.Tensor3D; // [B*H, T, T]
  /** A site's mask: [B*H, T, T] for attention weights, else [B*T, C]. Undefined: eval mode. */
  readonly dropMask: ((site: DropoutSite) => tf.Tensor) | undefined;
  readonly shape: AttentionShape;
}

/** The batch's constant tensors; dropoutSeed undefined (or dropout 0) means no dropout. */
export function batchTensors(batch: Batch, config: GPTConfig, dropoutSeed: number | undefined): BatchTensors {
  const { batchSize: B, seqLen: T } = batch;
  const { nHeads: H, dModel: C, dropout: rate } = config;
  const shape: AttentionShape = { batchSize: B, seqLen: T, nHeads: H, dHead: C / H };
  const dropMask =
    dropoutSeed === undefined || rate === 0
      ? undefined
      : (site: DropoutSite) => {
          const dims = site.kind === 'attention_weights' ? [B * H, T, T] : [B * T, C];
          return dropoutMaskTensor(dims, rate, streamSeed(dropoutSeed, dropoutStream(site)));
        };
  return {
    ids: tf.tensor1d(batch.inputIds, 'int32'),
    maskBias: tf.tensor3d(attentionMaskBias(batch.attentionMask, shape), [B * H, T, T]),
    dropMask,
    shape,
  };
}

/** The batch's constant tensors made outside a tidy (trainStepOverlapped); dropout masks are made inside. */
export function disposeBatchTensors(inputs: BatchTensors): void {
  inputs.ids.dispose();
  inputs.maskBias.dispose();
}
