/**
 * The checkpoint file format (worker/checkpoint_format.ts): PyTorch's layout for linear weights,
 * old files still read, weights-only files from PyTorch, a checksum over the whole file and the
 * step counts cross-checked.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { FileError } from '../../shared/errors.js';
import {
  CHECKPOINT_FORMAT,
  CHECKPOINT_FORMAT_V1,
  checkpointImage,
  decodeCheckpoint,
  encodeCheckpoint,
  type ParamLayout,
  type TrainState,
} from '../../worker/checkpoint_format.js';
import { paramSpecs } from '../../worker/model/params.js';
import { decodeSafetensors, encodeSafetensors } from '../../worker/safetensors.js';

// A linear layer of 2 inputs and 3 outputs (held [2, 3]), a square one (held [2, 2]), a bias.
const layout: ParamLayout = [
  { name: 'fc.weight', shape: [2, 3], linear: true },
  { name: 'sq.weight', shape: [2, 2], linear: true },
  { name: 'fc.bias', shape: [3] },
];
// Held in memory, row-major: fc.weight [[1,2,3],[4,5,6]], sq.weight [[7,8],[9,10]], fc.bias [11,12,13].
const held = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
// PyTorch's layout: fc.weight [3, 2] = [[1,4],[2,5],[3,6]], sq.weight transposed [[7,9],[8,10]].
const torchOrder = [1, 4, 2, 5, 3, 6, 7, 9, 8, 10, 11, 12, 13];
const model = { vocabSize: 3, maxPositionEmbeddings: 4, nLayers: 1, nHeads: 1, dModel: 2, dFf: 3, dropout: 0 };
const hyper = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };

function state(over: Partial<TrainState> = {}): TrainState {
  return {
    step: 5,
    skippedSteps: 1,
    params: held,
    optimizer: { stepCount: 4, m: held.map((x) => -x), v: held.map((x) => x / 2) },
    sampler: { epoch: 1, position: 3 },
    worldSize: 2,
    tokensSeen: 640,
    trainLoss: 2.5,
    ...over,
  };
}

const image = (s: TrainState = state()): Uint8Array => encodeCheckpoint(layout, s, model, { seqLen: 4 }, hyper);
const tensor = (bytes: Uint8Array, name: string) => decodeSafetensors(bytes, 't').tensors.find((t) => t.name === name);
const text = (bytes: Uint8Array): string => Buffer.from(bytes).toString('latin1');
const edit = (bytes: Uint8Array, from: string, to: string): Uint8Array => {
  assert.equal(from.length, to.length);
  const s = text(bytes);
  assert.equal(s.split(from).length, 2, `${from} once`);
  return Buffer.from(s.replace(from, to), 'latin1');
};

describe('checkpoint format 2', () => {
  it("marks exactly the GPT's nn.Linear weights, the square out_proj included (a missed one would be stored [in, out])", () => {
    const linear = paramSpecs({ ...model, nLayers: 2 })
      .filter((p) => p.linear)
      .map((p) => p.name);
    const perBlock = (l: number) => ['attn.qkv_proj', 'attn.out_proj', 'mlp.fc1', 'mlp.fc2'].map((m) => `blocks.${l}.${m}.weight`);
    assert.deepEqual(linear, [...perBlock(0), ...perBlock(1), 'lm_head.weight']);
  });

  it('stores linear weights in PyTorch layout [out, in], the square one transposed too, and reads them back as held', () => {
    const bytes = image();
    assert.equal(decodeSafetensors(bytes, 't').metadata.format, CHECKPOINT_FORMAT);
    assert.deepEqual(tensor(bytes, 'fc.weight')?.shape, [3, 2]);
    assert.deepEqual([...(tensor(bytes, 'fc.weight')?.data ?? [])], [1, 4, 2, 5, 3, 6]);
    assert.deepEqual(tensor(bytes, 'sq.weight')?.shape, [2, 2]);
    assert.deepEqual([...(tensor(bytes, 'sq.weight')?.data ?? [])], [7, 9, 8, 10]);
    assert.deepEqual([...(tensor(bytes, 'fc.bias')?.data ?? [])], [11, 12, 13]);
    // The moments in the same layout, flat in parameter order.
    assert.deepEqual(
      [...(tensor(bytes, 'optimizer.m')?.data ?? [])],
      torchOrder.map((x) => -x),
    );
    const c = decodeCheckpoint(bytes, 'p', layout);
    assert.deepEqual(c.params, held);
    assert.deepEqual(
      c.optimizer.m,
      held.map((x) => -x),
    );
    assert.deepEqual(
      c.optimizer.v,
      held.map((x) => x / 2),
    );
    assert.equal(c.step, 5);
    assert.equal(c.skippedSteps, 1);
    assert.equal(c.optimizer.stepCount, 4);
    assert.equal(c.source, 'rosedist');
  });

  it('the checksum covers the metadata: an edited step or sampler position is refused as damaged', () => {
    const bytes = image();
    assert.ok(decodeCheckpoint(bytes, 'p', layout));
    const edits = [
      ['"step":"5"', '"step":"9"'],
      ['\\"position\\":3', '\\"position\\":7'],
      ['"skipped_steps":"1"', '"skipped_steps":"5"'],
      ['{\\"seqLen\\":4}', '{\\"seqLen\\":8}'],
    ] as const;
    for (const [from, to] of edits) {
      assert.throws(
        () => decodeCheckpoint(edit(bytes, from, to), 'p', layout),
        (e) => e instanceof FileError && /checkpoint p fails its checksum/.test(e.message),
        `${from} → ${to}`,
      );
    }
    // A data byte too, and a damaged checksum field.
    const flipped = bytes.slice();
    flipped[flipped.length - 1] ^= 1;
    assert.throws(() => decodeCheckpoint(flipped, 'p', layout), /fails its checksum/);
    assert.throws(() => decodeCheckpoint(edit(bytes, '"sha256":"', '"sha257":"'), 'p', layout), /has no valid "sha256"/);
  });

  it("cross-checks the step against the optimizer's own count", () => {
    // A consistent checksum over inconsistent counts (a writer's bug, or a hand-made file).
    const bad = image(state({ step: 9 }));
    assert.throws(
      () => decodeCheckpoint(bad, 'p', layout),
      (e) => e instanceof FileError && /is inconsistent: step 9, but its optimizer took 4 steps and 1 were skipped/.test(e.message),
    );
  });

  it('a NaN train loss (no update yet) round-trips', () => {
    assert.ok(Number.isNaN(decodeCheckpoint(image(state({ trainLoss: Number.NaN })), 'p', layout).trainLoss));
  });

  it('refuses a sampler position that is not a count', () => {
    assert.throws(() => decodeCheckpoint(image(state({ sampler: { epoch: 0, position: -1 } })), 'p', layout), /malformed optimizer or sampler state/);
  });
});

describe('older and foreign files', () => {
  /** A format-1 file as rosedist wrote it before: linear weights [in, out], checksum of the data section. */
  function v1(): Uint8Array {
    const t = (name: string, shape: number[], data: Float32Array) => ({ name, shape, data });
    const tensors = [
      t('fc.weight', [2, 3], held.subarray(0, 6)),
      t('sq.weight', [2, 2], held.subarray(6, 10)),
      t('fc.bias', [3], held.subarray(10)),
      t(
        'optimizer.m',
        [13],
        held.map((x) => -x),
      ),
      t(
        'optimizer.v',
        [13],
        held.map((x) => x / 2),
      ),
    ];
    const hash = createHash('sha256');
    for (const x of tensors) hash.update(new Uint8Array(x.data.buffer, x.data.byteOffset, x.data.byteLength));
    return encodeSafetensors(tensors, {
      format: CHECKPOINT_FORMAT_V1,
      model_config: JSON.stringify(model),
      train_config: '{}',
      step: '5',
      world_size: '2',
      tokens_seen: '640',
      train_loss: '2.5',
      sampler: '{"epoch":1,"position":3}',
      optimizer: JSON.stringify({ stepCount: 5, ...hyper }),
      sha256: hash.digest('hex'),
    });
  }

  it('reads format 1 ([in, out], unversioned layout) without transposing', () => {
    const c = decodeCheckpoint(v1(), 'old', layout);
    assert.deepEqual(c.params, held);
    assert.deepEqual(
      c.optimizer.m,
      held.map((x) => -x),
    );
    assert.equal(c.step, 5);
    assert.equal(c.skippedSteps, 0);
    const damaged = v1();
    damaged[damaged.length - 1] ^= 1;
    assert.throws(() => decodeCheckpoint(damaged, 'old', layout), /fails its checksum/);
  });

  it('reads a weights-only file in PyTorch layout (no metadata, or {"format":"pt"}) as step 0 with a fresh optimizer', () => {
    const torch = (metadata: Record<string, string>) =>
      encodeSafetensors(
        [
          { name: 'fc.weight', shape: [3, 2], data: Float32Array.from(torchOrder.slice(0, 6)) },
          { name: 'sq.weight', shape: [2, 2], data: Float32Array.from(torchOrder.slice(6, 10)) },
          { name: 'fc.bias', shape: [3], data: Float32Array.from(torchOrder.slice(10)) },
        ],
        metadata,
      );
    for (const metadata of [{}, { format: 'pt' }] as Record<string, string>[]) {
      const c = decodeCheckpoint(torch(metadata), 'torch', layout);
      assert.equal(c.source, 'weights');
      assert.deepEqual(c.params, held);
      assert.equal(c.step, 0);
      assert.equal(c.optimizer.stepCount, 0);
      assert.ok(c.optimizer.m.every((x) => x === 0));
    }
    // In the held layout instead ([in, out]): the non-square weight's shape is refused by name.
    const wrong = encodeSafetensors([
      { name: 'fc.weight', shape: [2, 3], data: held.subarray(0, 6) },
      { name: 'sq.weight', shape: [2, 2], data: held.subarray(6, 10) },
      { name: 'fc.bias', shape: [3], data: held.subarray(10) },
    ]);
    assert.throws(() => decodeCheckpoint(wrong, 'torch', layout), /parameter fc.weight has shape \[2, 3\], expected \[3, 2\]/);
    const missing = encodeSafetensors([{ name: 'fc.bias', shape: [3], data: held.subarray(10) }]);
    assert.throws(() => decodeCheckpoint(missing, 'torch', layout), /parameter fc.weight is missing/);
  });
});

describe('a checkpoint image built before its moments are known (ZeRO gathers into it)', () => {
  it('filled in memory order and sealed, it is the encoded checkpoint byte for byte', () => {
    const s = state();
    const built = checkpointImage(layout, { ...s, optimizer: { stepCount: s.optimizer.stepCount } }, model, { seqLen: 4 }, hyper);
    // As zero.ts consolidate fills it: shard by shard, memory order.
    built.m.set(s.optimizer.m.subarray(0, 7));
    built.m.set(s.optimizer.m.subarray(7), 7);
    built.v.set(s.optimizer.v);
    assert.deepEqual(built.seal(), image(s));
    assert.throws(() => built.seal(), /sealed twice/);
  });
});
