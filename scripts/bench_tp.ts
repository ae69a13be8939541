/**
 * What tensor parallelism costs and saves: dp 4, tp 2 × dp 2 and tp 4 on 4 processes (ZeroMQ on
 * loopback), at the same global batch, per model size.
 *
 *   npm run bench:tp -- [--nproc 4] [--layouts 1,2,4] [--models default,large]
 *                                         [--global-batch 16] [--seq-len 32] [--steps 3] [--repeat 2]
 *                                         [--backend wasm] [--json FILE]
 *
 * A layout is a tensor-parallel size (the rest of the 4 ranks is data parallel). Each rank runs
 * what train_ddp does per optimizer step on synthetic batches: forward + backward (TP collectives
 * inside), the gradient all-reduce over the DP group, AdamW on its flat copy, the write-back.
 * Per layout: parameters and AdamW state (m, v) held per rank; median step time over the timed
 * steps (the slowest rank of each step) and its spread (min–max); bytes each rank sent per step
 * over all its rings (world, TP, DP; payloads and 32-byte headers), mean over ranks. Layouts run
 * interleaved --repeat times (the machine is shared); the table reports medians over rounds and
 * the ratio of each layout's step time and bytes to dp's (the anchor, same run).
 * Models: "default" (the trainer's defaults: 2 layers, d_model 128, d_ff 512, 4 heads) and
 * "large" (--d-model 512 --d-ff 2048 --n-layers 4, 8 heads).
 */
import { readWorkerEnv, workerEnvVars, type WorkerEnv } from '../shared/env.js';
import { formatError } from '../shared/errors.js';
import { freePort } from '../launcher/ports.js';
import { packagePath, tsNodeArgs } from '../shared/runtime.js';
import { lastLines, runProcess } from '../shared/subprocess.js';
import { hideBin, yargs } from '../shared/yargs.js';
import { writeFileSync } from 'node:fs';
import { initProcessGroup } from '../worker/comm/index.js';
import { createMesh } from '../worker/comm/mesh.js';
import { allGatherJson, type ProcessGroup } from '../worker/comm/process_group.js';
import { averageGradients } from '../worker/ddp.js';
import { GradBuffer } from '../worker/grad_buffer.js';
import { GPT, type GPTConfig } from '../worker/model/gpt.js';
import { TensorParallelGPT } from '../worker/model/tp_gpt.js';
import { ADAMW_DEFAULTS, AdamW } from '../worker/optim.js';
import { initBackend } from '../worker/tf.js';
import type { BackendChoice } from '../worker/backend_choice.js';

const MODELS: Record<string, GPTConfig> = {
  default: { vocabSize: 10000, maxPositionEmbeddings: 128, nLayers: 2, nHeads: 4, dModel: 128, dFf: 512, dropout: 0 },
  large: { vocabSize: 10000, maxPositionEmbeddings: 128, nLayers: 4, nHeads: 8, dModel: 512, dFf: 2048, dropout: 0 },
};

interface Measured {
  readonly tp: number;
  readonly params_per_rank: number;
  readonly adam_floats_per_rank: number;
  readonly step_ms: number[];
  readonly bytes_per_step: number;
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function sent(groups: readonly ProcessGroup[]): number {
  return [...new Set(groups)].reduce((a, g) => a + ((g as { bytesSent?: number }).bytesSent ?? 0), 0);
}

async function worker(model: string, tp: number, globalBatch: number, seqLen: number, steps: number, backend: BackendChoice): Promise<void> {
  const env = readWorkerEnv();
  const pg = await initProcessGroup(env);
  await initBackend(backend);
  const mesh = await createMesh(pg, tp);
  const cfg = MODELS[model];
  const m = tp > 1 ? new TensorParallelGPT(cfg, 1, mesh.tp) : new GPT(cfg, 1);
  const n = m.numParams;
  const optimizer = new AdamW(n, ADAMW_DEFAULTS);
  const params = new Float32Array(n);
  m.readFlat(params);
  const syncBuf = new Float32Array(n + 1);
  const gb = new GradBuffer(syncBuf);
  const B = globalBatch / mesh.dpSize;
  const times: number[] = [];
  let bytes0 = 0;
  for (let s = 0; s <= steps; s++) {
    if (s === 1) bytes0 = sent([pg, mesh.tp, mesh.dp]); // step 0 warms up
    const ids = Int32Array.from({ length: B * seqLen }, (_, i) => (i * 7919 + s * 131 + mesh.dpRank * 17) % cfg.vocabSize);
    const batch = { inputIds: ids, labels: ids, attentionMask: new Int32Array(B * seqLen).fill(1), batchSize: B, seqLen };
    await pg.barrier();
    const t0 = performance.now();
    syncBuf[n] = (await m.trainStep(batch, s, syncBuf.subarray(0, n))).loss;
    await averageGradients(mesh.dp, gb);
    optimizer.step(params, syncBuf.subarray(0, n));
    m.writeFlat(params);
    const ms = performance.now() - t0;
    if (s > 0) times.push(Math.max(...(await allGatherJson(pg, ms))));
  }
  const perRank = await allGatherJson(pg, (sent([pg, mesh.tp, mesh.dp]) - bytes0) / steps);
  if (pg.rank === 0) {
    const r: Measured = {
      tp,
      params_per_rank: n,
      adam_floats_per_rank: 2 * n,
      step_ms: times,
      bytes_per_step: perRank.reduce((a, b) => a + b, 0) / perRank.length,
    };
    process.stdout.write(`BENCH ${JSON.stringify(r)}\n`);
  }
  m.dispose();
  await pg.close();
}

async function runLayout(nproc: number, model: string, tp: number, rest: string[]): Promise<Measured> {
  const port = await freePort('127.0.0.1');
  const args = [...tsNodeArgs(), packagePath('scripts/bench_tp.ts'), '--worker', '--models', model, '--layouts', String(tp), ...rest];
  const outs = await Promise.all(
    Array.from({ length: nproc }, async (_, rank) => {
      const e: WorkerEnv = {
        rank,
        localRank: rank,
        worldSize: nproc,
        localWorldSize: nproc,
        nodeRank: 0,
        nnodes: 1,
        masterAddr: '127.0.0.1',
        masterPort: port,
        runId: `bench-${port}`,
        restartCount: 0,
        maxRestarts: 0,
        errorFile: undefined,
        nodeId: 'bench',
        secret: undefined,
        launcherPid: undefined,
        tmpDir: undefined,
      };
      const r = await runProcess(process.execPath, args, { env: workerEnvVars(e) });
      if (r.code !== 0) throw new Error(`rank ${rank} exited with ${r.code ?? r.signal}: ${lastLines(r.stderr, 5)}`);
      return r.stdout;
    }),
  );
  const line = outs[0].split('\n').find((l) => l.startsWith('BENCH '));
  if (line === undefined) throw new Error('rank 0 printed no result');
  return JSON.parse(line.slice(6)) as Measured;
}

const mib = (b: number): string => (b / (1 << 20)).toFixed(2);

async function main(): Promise<void> {
  const argv = await yargs(hideBin(process.argv))
    .option('nproc', { type: 'number', default: 4 })
    .option('layouts', { type: 'string', default: '1,2,4', describe: 'tensor-parallel sizes' })
    .option('models', { type: 'string', default: 'default,large' })
    .option('global-batch', { type: 'number', default: 16 })
    .option('seq-len', { type: 'number', default: 32 })
    .option('steps', { type: 'number', default: 3, describe: 'timed steps (after one warm-up step)' })
    .option('repeat', { type: 'number', default: 2, describe: 'interleaved rounds of all layouts' })
    .option('backend', { type: 'string', default: 'wasm' })
    .option('json', { type: 'string' })
    .option('worker', { type: 'boolean', default: false, hidden: true })
    .strict()
    .parseAsync();
  const layouts = argv.layouts.split(',').map(Number);
  const models = argv.models.split(',');
  const common = [
    '--global-batch',
    String(argv['global-batch']),
    '--seq-len',
    String(argv['seq-len']),
    '--steps',
    String(argv.steps),
    '--backend',
    argv.backend,
  ];
  if (argv.worker) return worker(models[0], layouts[0], argv['global-batch'], argv['seq-len'], argv.steps, argv.backend as BackendChoice);
  const all: Record<string, Measured[][]> = {};
  for (const model of models) {
    all[model] = layouts.map(() => []);
    for (let rep = 0; rep < argv.repeat; rep++) {
      for (const [i, tp] of layouts.entries()) all[model][i].push(await runLayout(argv.nproc, model, tp, common));
    }
    const c = MODELS[model];
    console.log(
      `\n${model}: ${c.nLayers} layers, d_model ${c.dModel}, d_ff ${c.dFf}, ${c.nHeads} heads, vocab ${c.vocabSize}; ${argv.nproc} ranks, global batch ${argv['global-batch']} × ${argv['seq-len']} tokens, ${argv.backend}, median of ${argv.repeat} × ${argv.steps} steps`,
    );
    console.log('| layout | params / rank | AdamW state / rank (MiB) | step ms (median, min–max) | sent / rank / step (MiB) | step time vs dp | bytes vs dp |');
    console.log('|---|---|---|---|---|---|---|');
    const base = all[model][0];
    const baseMs = median(base.flatMap((r) => r.step_ms));
    const baseBytes = median(base.map((r) => r.bytes_per_step));
    for (const [i, tp] of layouts.entries()) {
      const rs = all[model][i];
      const ms = rs.flatMap((r) => r.step_ms);
      const bytes = median(rs.map((r) => r.bytes_per_step));
      const name = tp === 1 ? `dp ${argv.nproc}` : tp === argv.nproc ? `tp ${tp}` : `tp ${tp} × dp ${argv.nproc / tp}`;
      console.log(
        `| ${name} | ${rs[0].params_per_rank.toLocaleString('en-US')} | ${mib(rs[0].adam_floats_per_rank * 4)} | ${median(ms).toFixed(0)} (${Math.min(...ms).toFixed(0)}–${Math.max(...ms).toFixed(0)}) | ${mib(bytes)} | ${(median(ms) / baseMs).toFixed(2)} | ${(bytes / baseBytes).toFixed(2)} |`,
      );
    }
  }
  if (argv.json !== undefined) writeFileSync(argv.json, `${JSON.stringify(all, null, 1)}\n`);
}

main().catch((e: unknown) => {
  console.error(formatError(e));
  process.exitCode = 1;
});
