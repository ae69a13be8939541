/**
 * train_ddp: data-parallel training, one process per rank, started by the launcher
 * (`npx rosedist --nproc-per-node=2 train_ddp`) or by anything that sets the environment contract
 * (shared/env.ts: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, ...).
 *   node --import tsx worker/train_ddp.ts [--help] [options]
 * Rank 0 logs to logs/train_ddp.log and logs/train_ddp.metrics.jsonl.
 */
import { createLogger } from '../shared/logging.js';
import { timeoutMs } from '../shared/timers.js';
import { hideBin } from '../shared/yargs.js';
import { initProcessGroup } from './comm/index.js';
import { createTopologyGroup } from './comm/hierarchical.js';
import { allReduceTopologyOf, parseTrainConfig, trainUsage, wantsHelp } from './config.js';
import { runProgram } from './main.js';
import { claimOutputs } from './output_paths.js';
import { train } from './trainer.js';

await runProgram('train_ddp', async ({ env, useLogger, useProcessGroup, useOutputLock }) => {
  const argv = hideBin(process.argv);
  if (wantsHelp(argv)) {
    if (env.rank === 0) console.log(trainUsage('train_ddp'));
    return;
  }
  const cfg = parseTrainConfig(argv, 'train_ddp');
  const logger = useLogger(createLogger({ rank: env.rank, runId: env.runId, consoleFormat: cfg.logFormat }));
  const world = useProcessGroup(await initProcessGroup(env, { collectiveTimeoutMs: timeoutMs(cfg.collectiveTimeoutS), warn: (m) => logger.warn(m) }));
  // Flat, or hierarchical across hosts (comm/hierarchical.ts): the trainer sees one ProcessGroup either way.
  const topology = allReduceTopologyOf(cfg);
  const { pg, decision } = await createTopologyGroup(world, env, topology.choice, { why: topology.why });
  useProcessGroup(pg);
  // The log file is attached once its path is checked and locked (rank 0).
  useOutputLock(await claimOutputs(pg, cfg, env.runId, logger));
  await train({ cfg, env, pg, logger, topology: pg.worldSize > 1 ? decision.describe : undefined });
});
