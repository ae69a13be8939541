/**
 * train_minimal: the single-process trainer (the Python original's train_minimal.py).
 *   node --import tsx worker/train_minimal.ts [--help] [options]
 * Logs to logs/train_minimal.log, metrics to logs/train_minimal.metrics.jsonl.
 */
import { ConfigError } from '../shared/errors.js';
import { createLogger } from '../shared/logging.js';
import { hideBin } from '../shared/yargs.js';
import { SingleProcessGroup } from './comm/process_group.js';
import { parseTrainConfig, trainUsage, wantsHelp } from './config.js';
import { runProgram } from './main.js';
import { claimOutputs } from './output_paths.js';
import { train } from './trainer.js';

await runProgram('train_minimal', async ({ env, useLogger, useProcessGroup, useOutputLock }) => {
  const argv = hideBin(process.argv);
  if (wantsHelp(argv)) {
    console.log(trainUsage('train_minimal'));
    return;
  }
  const cfg = parseTrainConfig(argv, 'train_minimal');
  if (env.worldSize > 1) {
    throw new ConfigError(`train_minimal is a single process, but WORLD_SIZE is ${env.worldSize}`, 'run train_ddp to train with several workers');
  }
  const logger = useLogger(createLogger({ rank: 0, runId: env.runId, consoleFormat: cfg.logFormat }));
  const pg = useProcessGroup(new SingleProcessGroup());
  // The log file is attached once its path is checked and locked (rank 0).
  useOutputLock(await claimOutputs(pg, cfg, env.runId, logger));
  await train({ cfg, env, pg, logger });
});
