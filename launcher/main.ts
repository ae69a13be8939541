/**
 * `rosedist`: the entry (bin/rosedist.mjs imports this module, which runs at once).
 *
 *   rosedist [launcher options] PROGRAM [program options]    launch a worker group
 *   rosedist plot ...                                        draw metrics (launcher/plot/main.ts)
 *
 * CLI → config → rendezvous (in memory on one node, rendezvous.ts on several) → agent. Ends
 * by setting process.exitCode: 0 on success, 1 when the workers failed (after the summary), 2 on
 * bad input (one line, no stack), 128 + n after signal n.
 */
import { rmSync } from 'node:fs';
import { constants } from 'node:os';
import { exitCodeOf, formatError, RosedistError } from '../shared/errors.js';
import { makeRunTmpDir, sweepAbandoned } from '../shared/run_tmp_dir.js';
import { hideBin } from '../shared/yargs.js';
import { Agent } from './agent.js';
import { parseCli, usage } from './cli.js';
import { resolveConfig, type LaunchConfig } from './config.js';
import { stderrSink } from './events.js';
import { hostRun, joinRun } from './rendezvous.js';
import { elasticRendezvous } from './elastic_rendezvous.js';
import { subprocessContext } from './process_context.js';
import { localRendezvous, type Rendezvous } from './coordinator_client.js';

const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

type PlotModule = { runPlot?: (argv: string[]) => Promise<number> };

/** `rosedist plot ...`: loaded only when asked for, so the launcher works without it. */
async function runPlotCommand(argv: readonly string[]): Promise<number> {
  // A variable specifier: neither tsc nor the loader look for the module until this runs.
  const specifier = './plot/main.js';
  let mod: PlotModule;
  try {
    mod = (await import(specifier)) as PlotModule;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw e;
    mod = {};
  }
  if (typeof mod.runPlot !== 'function') {
    throw new RosedistError('the plot command is not part of this installation', 'reinstall rosedist, or run a launch: rosedist [options] PROGRAM');
  }
  return mod.runPlot([...argv]);
}

function rendezvousFor(config: LaunchConfig, abort: AbortSignal): Promise<Rendezvous> {
  if (config.elastic !== undefined) return elasticRendezvous(config, stderrSink, abort);
  if (config.nnodes === 1) {
    const n = config.nprocPerNode;
    return Promise.resolve(localRendezvous({ runId: config.runId, worldSize: n, localWorldSizes: [n] }, config.maxRestarts));
  }
  return config.nodeRank === 0 ? hostRun(config, stderrSink, abort) : joinRun(config, abort);
}

async function main(argv: readonly string[]): Promise<number> {
  if (argv[0] === 'plot') return runPlotCommand(argv.slice(1));
  const cli = parseCli(argv, process.env);
  if (cli.help) {
    process.stdout.write(`${await usage()}\n`);
    return 0;
  }
  const config = await resolveConfig(cli);
  const abort = new AbortController();
  let agent: Agent | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (agent !== undefined) agent.interrupt(signal);
    else abort.abort(signal);
  };
  for (const s of FORWARDED_SIGNALS) process.on(s, onSignal);
  // A directory of our own, removed at the end whatever happened (a killed worker cannot clean
  // up): the workers' ipc sockets, and without --log-dir their error files. Those of launchers
  // killed outright (SIGKILL), whose processes are all gone, are removed first.
  sweepAbandoned();
  const tmp = makeRunTmpDir();
  try {
    const rendezvous = await rendezvousFor(config, abort.signal);
    agent = new Agent({ config, rendezvous, context: subprocessContext, emit: stderrSink, fileBase: config.logDir ?? tmp, tmpDir: tmp });
    if (abort.signal.aborted) agent.interrupt(abort.signal.reason as NodeJS.Signals);
    const result = await agent.run();
    await rendezvous.close();
    return result.exitCode;
  } catch (e) {
    // Interrupted while the nodes were joining: no workers yet, nothing to stop.
    if (!abort.signal.aborted) throw e;
    const signal = abort.signal.reason as NodeJS.Signals;
    process.stderr.write(`rosedist: ${formatError(e)}\n`);
    return 128 + (constants.signals[signal] ?? 15);
  } finally {
    for (const s of FORWARDED_SIGNALS) process.off(s, onSignal);
    rmSync(tmp, { recursive: true, force: true });
  }
}

try {
  process.exitCode = await main(hideBin(process.argv));
} catch (e) {
  process.stderr.write(`rosedist: ${formatError(e)}\n`);
  process.exitCode = exitCodeOf(e);
}
