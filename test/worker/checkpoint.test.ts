import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError, FileError } from '../../shared/errors.js';
import { closeLogger, createLogger } from '../../shared/logging.js';
import { SingleProcessGroup } from '../../worker/comm/process_group.js';
import { spawnSync } from 'node:child_process';
import {
  checkSamplerState,
  encodeCheckpoint,
  readCheckpoint,
  removeStaleCheckpointTemps,
  restoreCheckpoint,
  saveCheckpoint,
  writeCheckpointFile,
  type TrainState,
} from '../../worker/checkpoint.js';
import { gptConfigOf, parseTrainConfig } from '../../worker/config.js';
import { decodeSafetensors, encodeSafetensors } from '../../worker/safetensors.js';

const dir = mkdtempSync(join(tmpdir(), 'rosedist-ckpt-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const layout = [
  { name: 'tok.weight', shape: [3, 2] },
  { name: 'ln.bias', shape: [2] },
];
const cfgFor = (path: string, extra: string[] = []) =>
  parseTrainConfig(['--vocab-size', '3', '--d-model', '2', '--n-heads', '1', '--seq-len', '4', '--checkpoint-path', path, ...extra], 'train_minimal');
const hyper = { lr: 3e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };

function state(): TrainState {
  const f = (k: number) => Float32Array.from({ length: 8 }, (_, i) => (i + 1) * k + 0.125);
  return {
    step: 7,
    skippedSteps: 0,
    params: f(1),
    optimizer: { stepCount: 7, m: f(-0.5), v: f(0.25) },
    sampler: { epoch: 2, position: 5 },
    worldSize: 2,
    tokensSeen: 4096,
    trainLoss: 1.5,
  };
}

function write(path: string, extra: string[] = []): void {
  const cfg = cfgFor(path, extra);
  writeCheckpointFile(path, encodeCheckpoint(layout, state(), gptConfigOf(cfg), cfg, hyper));
}

describe('safetensors', () => {
  it('writes the documented layout: u64 header length, JSON header, aligned raw F32 data', () => {
    const a = Float32Array.from([1, -2, 3.5, 4, 5, 6]);
    const b = Float32Array.from([0.25]);
    const bytes = encodeSafetensors(
      [
        { name: 'a', shape: [2, 3], data: a },
        { name: 'b', shape: [1], data: b },
      ],
      { note: 'x' },
    );
    const n = Number(Buffer.from(bytes).readBigUInt64LE(0));
    assert.equal((8 + n) % 8, 0);
    const header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8'));
    assert.deepEqual(header, {
      __metadata__: { note: 'x' },
      a: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] },
      b: { dtype: 'F32', shape: [1], data_offsets: [24, 28] },
    });
    const data = Buffer.from(bytes.subarray(8 + n));
    assert.equal(data.length, 28);
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5].map((i) => data.readFloatLE(4 * i)),
      [1, -2, 3.5, 4, 5, 6],
    );
    assert.equal(data.readFloatLE(24), 0.25);
    const back = decodeSafetensors(bytes, 'test');
    assert.deepEqual(
      back.tensors.map((t) => [t.name, t.shape, [...t.data]]),
      [
        ['a', [2, 3], [1, -2, 3.5, 4, 5, 6]],
        ['b', [1], [0.25]],
      ],
    );
  });

  it('rejects damaged images', () => {
    const good = encodeSafetensors([{ name: 'a', shape: [2], data: Float32Array.from([1, 2]) }]);
    assert.throws(() => decodeSafetensors(good.subarray(0, 5), 'f'), /only 5 bytes/);
    assert.throws(() => decodeSafetensors(good.subarray(0, good.length - 1), 'f'), /truncated/);
    const bigHeader = good.slice();
    bigHeader[0] = 0xff;
    bigHeader[1] = 0xff;
    assert.throws(() => decodeSafetensors(bigHeader, 'f'), /exceeds the file size/);
    const badJson = good.slice();
    badJson[8] = 0x21;
    assert.throws(() => decodeSafetensors(badJson, 'f'), /not valid JSON/);
  });
});

describe('checkpoint file', () => {
  it('round-trips weights, optimizer state, step, sampler, world size, configs', () => {
    const path = join(dir, 'rt.safetensors');
    write(path);
    const c = readCheckpoint(path, layout, cfgFor(path));
    assert.ok(c);
    const s = state();
    assert.deepEqual(c.params, s.params);
    assert.deepEqual(c.optimizer.m, s.optimizer.m);
    assert.deepEqual(c.optimizer.v, s.optimizer.v);
    assert.equal(c.optimizer.stepCount, 7);
    assert.equal(c.step, 7);
    assert.deepEqual(c.sampler, { epoch: 2, position: 5 });
    assert.equal(c.worldSize, 2);
    assert.equal(c.tokensSeen, 4096);
    assert.equal(c.trainLoss, 1.5);
    assert.equal(c.source, 'rosedist');
    assert.equal(c.modelConfig?.vocabSize, 3);
    assert.equal(c.trainConfig?.checkpointPath, path);
    // Other tools see each parameter under its name and shape.
    const file = decodeSafetensors(readFileSync(path), path);
    assert.deepEqual(file.tensors.find((t) => t.name === 'tok.weight')?.shape, [3, 2]);
    assert.deepEqual([...(file.tensors.find((t) => t.name === 'ln.bias')?.data ?? [])], [7.125, 8.125]);
    assert.equal(readdirSync(dir).filter((f) => f.includes('.tmp')).length, 0);
  });

  it('a missing file reads as undefined', () => {
    assert.equal(readCheckpoint(join(dir, 'none.safetensors'), layout, cfgFor('x')), undefined);
  });

  it('a flipped data byte fails the checksum', () => {
    const path = join(dir, 'flip.safetensors');
    write(path);
    const bytes = readFileSync(path);
    bytes[bytes.length - 3] ^= 0x40;
    writeFileSync(path, bytes);
    assert.throws(
      () => readCheckpoint(path, layout, cfgFor(path)),
      (e) => e instanceof FileError && /fails its checksum/.test(e.message),
    );
  });

  it('an edited step or sampler position in the metadata is refused as damaged (the checksum covers the whole file)', () => {
    const path = join(dir, 'edited.safetensors');
    write(path);
    const good = readFileSync(path).toString('latin1');
    for (const [from, to] of [
      ['"step":"7"', '"step":"9"'],
      ['\\"position\\":5', '\\"position\\":1'],
    ]) {
      assert.ok(good.includes(from), from);
      writeFileSync(path, Buffer.from(good.replace(from, to), 'latin1'));
      assert.throws(
        () => readCheckpoint(path, layout, cfgFor(path)),
        (e) => e instanceof FileError && /fails its checksum/.test(e.message),
        to,
      );
    }
  });

  it('a truncated file says so', () => {
    const path = join(dir, 'trunc.safetensors');
    write(path);
    truncateSync(path, readFileSync(path).length - 10);
    assert.throws(
      () => readCheckpoint(path, layout, cfgFor(path)),
      (e) => e instanceof FileError && /truncated/.test(e.message),
    );
    writeFileSync(path, '');
    assert.throws(() => readCheckpoint(path, layout, cfgFor(path)), FileError);
  });

  it('a file of another program is refused', () => {
    const path = join(dir, 'foreign.safetensors');
    writeFileSync(path, encodeSafetensors([{ name: 'w', shape: [1], data: Float32Array.from([1]) }], { format: 'other' }));
    assert.throws(() => readCheckpoint(path, layout, cfgFor(path)), /not a rosedist checkpoint/);
    // Without metadata it is read as a weights-only file, whose tensors must be this model's.
    writeFileSync(path, encodeSafetensors([{ name: 'w', shape: [1], data: Float32Array.from([1]) }]));
    assert.throws(() => readCheckpoint(path, layout, cfgFor(path)), /holds tensors this model does not have: w/);
  });

  it('a different model is a ConfigError naming every differing flag', () => {
    const path = join(dir, 'mismatch.safetensors');
    write(path);
    const other = cfgFor(path, ['--vocab-size', '5', '--n-layers', '3']);
    assert.throws(
      () => readCheckpoint(path, layout, other),
      (e) => e instanceof ConfigError && /--vocab-size 3 there, 5 here; --n-layers 2 there, 3 here/.test(e.message) && !/--d-model/.test(e.message),
    );
    // Dropout and training options may change.
    assert.ok(readCheckpoint(path, layout, cfgFor(path, ['--dropout', '0', '--batch-size', '3'])));
  });

  it('different data settings are refused naming each one; a different batch size continues with a warning', () => {
    const path = join(dir, 'data.safetensors');
    write(path, ['--dataset', 'toy:100']);
    assert.throws(
      () => readCheckpoint(path, layout, cfgFor(path, ['--seq-len', '3', '--dataset', 'toy:90', '--seed', '1'])),
      (e) =>
        e instanceof ConfigError &&
        e.message ===
          `checkpoint ${path} was written with other data settings: --dataset toy:100 there, toy:90 here; --seq-len 4 there, 3 here; --seed 0 there, 1 here` &&
        /pass the checkpoint's data options/.test(e.hint ?? ''),
    );
    // The toy data has no tokenizer: a different --tokenizer is no difference there. (The flags
    // refuse --tokenizer with the toy data, so the config is made by hand, as an older run's could be.)
    assert.deepEqual(readCheckpoint(path, layout, { ...cfgFor(path, ['--dataset', 'toy:100']), tokenizer: 'gpt2' })?.warnings, []);
    const c = readCheckpoint(path, layout, cfgFor(path, ['--dataset', 'toy:100', '--batch-size', '3', '--grad-accum-steps', '2']));
    assert.deepEqual(c?.warnings, [
      `resuming checkpoint ${path} with --batch-size 8 there, 3 here; --grad-accum-steps 1 there, 2 here: the data order continues at the same sample, with 6 samples per rank per step`,
    ]);
  });

  it('a sampler position past the end of a shard is refused', () => {
    // 10 samples at world size 2: 5 per rank; 4 per rank with --drop-last and 9 samples.
    assert.doesNotThrow(() => checkSamplerState({ epoch: 3, position: 5 }, 2, 10, false, 'p'));
    assert.throws(
      () => checkSamplerState({ epoch: 3, position: 6 }, 2, 10, false, 'p'),
      /sampler position 6 is past the end of a shard \(5 samples per rank at world size 2\)/,
    );
    assert.throws(() => checkSamplerState({ epoch: 0, position: 5 }, 2, 9, true, 'p'), /4 samples per rank/);
  });

  it('temporary files of dead processes are removed at start, those of live ones kept', async () => {
    const path = join(dir, 'stale', 'ck.safetensors');
    mkdirSync(join(dir, 'stale'));
    const dead = spawnSync(process.execPath, ['-e', '']).pid;
    assert.ok(dead);
    for (const pid of [dead, process.pid, process.ppid]) writeFileSync(`${path}.tmp-${pid}`, 'partial');
    writeFileSync(`${path}.tmp-notapid`, 'x');
    const logFile = join(dir, 'stale.log');
    const logger = createLogger({ rank: 0, file: logFile, silentConsole: true });
    removeStaleCheckpointTemps(path, logger);
    await closeLogger(logger);
    assert.deepEqual(
      readdirSync(join(dir, 'stale')).sort(),
      [`ck.safetensors.tmp-${process.pid}`, `ck.safetensors.tmp-${process.ppid}`, 'ck.safetensors.tmp-notapid'].sort(),
    );
    assert.match(
      readFileSync(logFile, 'utf8'),
      new RegExp(`WARN  removed .*ck\\.safetensors\\.tmp-${dead}, the temporary file of a checkpoint save that was killed`),
    );
  });

  it('a failed write leaves the previous checkpoint in place', () => {
    const path = join(dir, 'keep.safetensors');
    write(path);
    const before = readFileSync(path);
    // The temporary file's name is taken by a directory: the write fails before the rename.
    const blocker = `${path}.tmp-${process.pid}`;
    mkdirSync(blocker);
    assert.throws(() => writeCheckpointFile(path, new Uint8Array(10)), FileError);
    assert.deepEqual(readFileSync(path), before);
    rmSync(blocker, { recursive: true });
  });
});

describe('checkpoint collectives (world of one)', () => {
  it('save then restore fills params and optimizer; a missing file starts from scratch', async () => {
    const path = join(dir, 'coll.safetensors');
    const cfg = cfgFor(path);
    const logFile = join(dir, 'coll.log');
    const logger = createLogger({ rank: 0, file: logFile, silentConsole: true });
    const pg = new SingleProcessGroup();
    const params = new Float32Array(8);
    const opt = { m: new Float32Array(8), v: new Float32Array(8), stepCount: 0 };
    assert.equal(await restoreCheckpoint(pg, cfg, layout, params, opt, logger), undefined);
    await saveCheckpoint(pg, cfg, { config: gptConfigOf(cfg), params: layout }, state(), hyper, logger);
    const summary = await restoreCheckpoint(pg, cfg, layout, params, opt, logger);
    assert.deepEqual(summary, {
      source: 'rosedist',
      step: 7,
      skippedSteps: 0,
      worldSize: 2,
      tokensSeen: 4096,
      trainLoss: 1.5,
      sampler: { epoch: 2, position: 5 },
      stepCount: 7,
    });
    assert.deepEqual(params, state().params);
    assert.deepEqual(opt.v, state().optimizer.v);
    assert.equal(opt.stepCount, 7);
    await closeLogger(logger);
    const log = readFileSync(logFile, 'utf8');
    assert.match(log, new RegExp(`no checkpoint at ${path}, starting from scratch`));
    assert.match(log, /resumed from .* at step 7/);
    assert.match(log, /written by world size 2, this run has world size 1/);
    assert.ok(existsSync(path));
  });
});
