import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { FIXTURE, runLauncher } from '../helpers/launcher_run.js';
import { freePort } from '../helpers/ports.js';

/** Exit code 2, exactly one line on stderr naming what `pattern` says, no stack trace, no worker started. */
async function badInput(args: string[], pattern: RegExp): Promise<void> {
  const r = await runLauncher(args);
  assert.equal(r.code, 2, `exit code for ${args.join(' ')}: ${r.stderr}`);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `one line, got:\n${r.stderr}`);
  assert.match(lines[0] ?? '', pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  assert.equal(r.stdout, '');
}

test('each bad input gets one line naming the option, and exit code 2', { timeout: 120_000 }, async () => {
  await badInput(['--no-such-option', '1', FIXTURE], /^rosedist: unknown option --no-such-option/);
  await badInput(['--nproc-per-node', '0', FIXTURE], /--nproc-per-node "0".*pass --nproc-per-node an integer/);
  await badInput(['--master-port', '65536', FIXTURE], /--master-port "65536"/);
  await badInput(['--nnodes', '2', '--node-rank', '2', FIXTURE], /--node-rank 2 is not below --nnodes 2/);
  await badInput(['no_such_program.ts'], /program "no_such_program.ts" does not exist/);
  const server = createServer();
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  try {
    await badInput(
      ['--master-port', String(port), FIXTURE],
      new RegExp(`cannot listen on 127.0.0.1:${port} \\(--master-port ${port}\\).*pick another --master-port`),
    );
  } finally {
    server.close();
  }
});

test('--help prints the options and exits 0', { timeout: 30_000 }, async () => {
  const r = await runLauncher(['--help']);
  assert.equal(r.code, 0);
  for (const option of ['--nproc-per-node', '--max-restarts', '--local-ranks-filter', '--secret-file']) assert.match(r.stdout, new RegExp(option));
});
