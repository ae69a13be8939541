/**
 * The tape walk (model/tape_backward.ts) against tfjs's own backward, one process, no
 * communication. Runs GPT.trainStepTfjs (tf.variableGrads), GPT.trainStep (the walk in one go,
 * training's backward) and GPT.trainStepOverlapped (the walk in pieces, overlap's; a sink that
 * only counts) interleaved on the same batch, and prints the median ms of each and their ratios
 * to tfjs's.
 *
 *   npm run bench:backward -- [--repeat R] [--slice-ms S] [training options: model and batch]
 */
import { formatError, exitCodeOf } from '../shared/errors.js';
import { gptConfigOf, parseTrainConfig } from '../worker/config.js';
import { GPT, type Batch } from '../worker/model/gpt.js';
import { initBackend } from '../worker/tf.js';

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const take = (flag: string, fallback: number): number => {
    const i = argv.indexOf(flag);
    if (i < 0) return fallback;
    const v = Number(argv[i + 1]);
    argv.splice(i, 2);
    if (!Number.isFinite(v) || v < 0) throw new Error(`${flag} needs a number ≥ 0`);
    return v;
  };
  const repeat = take('--repeat', 20);
  const sliceMs = take('--slice-ms', 2);
  const cfg = parseTrainConfig(argv, 'train_ddp');
  const backend = await initBackend(cfg.backend);
  const model = new GPT(gptConfigOf(cfg), cfg.seed);
  const { batchSize: B, seqLen: T } = cfg;
  let s = 1;
  const inputIds = Int32Array.from({ length: B * T }, () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % cfg.vocabSize);
  const batch: Batch = { inputIds, attentionMask: new Int32Array(B * T).fill(1), labels: inputIds.slice(), batchSize: B, seqLen: T };
  const grads = new Float32Array(model.numParams);
  let readies = 0;
  const sink = { loss: () => {}, ready: () => void (readies += 1) };
  const kinds = ['tfjs', 'walk', 'pieces'] as const;
  const times: Record<(typeof kinds)[number], number[]> = { tfjs: [], walk: [], pieces: [] };
  for (let r = -2; r < repeat; r++) {
    // Each round in another order: each kind runs first, second and third equally often.
    const order = [0, 1, 2].map((k) => kinds[(k + r + 3) % 3] as (typeof kinds)[number]);
    for (const kind of r % 2 === 0 ? order : order.reverse()) {
      const t0 = performance.now();
      if (kind === 'tfjs') model.trainStepTfjs(batch, r, grads);
      else if (kind === 'walk') model.trainStep(batch, r, grads);
      else await model.trainStepOverlapped(batch, r, grads, sink, sliceMs);
      if (r >= 0) times[kind].push(performance.now() - t0);
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1] as number;
  const spread = (xs: number[]): string => `${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}`;
  console.log(`forward + backward, ${backend.name}, ${B}×${T} tokens, ${model.numParams.toLocaleString('en-US')} parameters, ${repeat} interleaved rounds`);
  console.log('| backward | median ms | min–max |');
  console.log('|---|---|---|');
  const label = { tfjs: 'tfjs (variableGrads)', walk: 'tape walk (trainStep)', pieces: `in pieces (slice ${sliceMs} ms)` };
  for (const k of kinds) console.log(`| ${label[k]} | ${median(times[k]).toFixed(1)} | ${spread(times[k])} |`);
  console.log(
    `tape walk / tfjs: ${(median(times.walk) / median(times.tfjs)).toFixed(3)}; in pieces / tfjs: ${(median(times.pieces) / median(times.tfjs)).toFixed(3)}`,
  );
  model.dispose();
}

main().catch((e: unknown) => {
  console.error(`bench:backward: ${formatError(e)}`);
  process.exitCode = exitCodeOf(e);
});
