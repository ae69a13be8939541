/**
 * The log file transport (shared/logging.ts): lines reach the file synchronously, and a failed
 * write (a full disk: /dev/full answers every write with ENOSPC) is kept as a FileError naming the
 * file, for the trainer to raise, instead of being dropped silently (issue 13, #2).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { FileError } from '../../shared/errors.js';
import { attachLogFile, closeLogger, createLogger, logFileFailure } from '../../shared/logging.js';

const dir = mkdtempSync(join(tmpdir(), 'rosedist-logging-'));
after(() => rmSync(dir, { recursive: true, force: true }));

it('writes every line to the file, creating its directory', async () => {
  const file = join(dir, 'a', 'b.log');
  const logger = createLogger({ rank: 0, silentConsole: true, file });
  logger.info('first');
  logger.warn('second');
  await closeLogger(logger);
  const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
  assert.equal(lines.length, 2);
  assert.match(lines[0] ?? '', /^\S+Z INFO  first$/);
  assert.match(lines[1] ?? '', /^\S+Z WARN  second$/);
  assert.equal(logFileFailure(logger), undefined);
});

it('a write to a full disk is reported as a FileError naming the file', { skip: !existsSync('/dev/full') && 'no /dev/full' }, async () => {
  const logger = createLogger({ rank: 0, silentConsole: true });
  attachLogFile(logger, '/dev/full');
  logger.info('lost');
  logger.info('not tried again');
  await closeLogger(logger);
  const failure = logFileFailure(logger);
  assert.ok(failure instanceof FileError);
  assert.match(failure.message, /^cannot write the log file \/dev\/full: ENOSPC/);
  assert.match(failure.hint ?? '', /free space/);
});

it('ranks other than 0 write no file', async () => {
  const file = join(dir, 'rank1.log');
  const logger = createLogger({ rank: 1, silentConsole: true, file });
  logger.warn('console only');
  await closeLogger(logger);
  assert.equal(existsSync(file), false);
});
