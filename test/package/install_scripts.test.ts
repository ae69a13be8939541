/**
 * A newcomer's `npm install` is quiet and deliberate: every installed package with an install
 * script is decided in package.json's `allowScripts` (npm 11 skips undecided ones with a warning).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runProcess } from '../../shared/subprocess.js';
import { packagePath } from '../../shared/runtime.js';

test('every dependency install script is decided in allowScripts (npm install-scripts ls lists none)', { timeout: 60_000 }, async () => {
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const r = await runProcess(npm, ['install-scripts', 'ls'], { cwd: packagePath('.') });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /No packages with unreviewed install scripts/, `undecided install scripts:\n${r.stdout}`);
});
