import assert from 'node:assert/strict';
import { test } from 'node:test';
import { lastLines, runProcess, startProcess } from '../../shared/subprocess.js';

const node = (code: string, opts = {}) => runProcess(process.execPath, ['-e', code], opts);

test('collects stdout and stderr apart, with the exit code; env adds to this process environment', async () => {
  const r = await node(
    "process.stdout.write('out ' + process.env.EXTRA + ' ' + (process.env.PATH !== undefined)); console.error('err'); process.exitCode = 3",
    { env: { EXTRA: 'x' } },
  );
  assert.deepEqual(r, { code: 3, signal: null, stdout: 'out x true', stderr: 'err\n' });
});

test('a multi-byte character split across two writes arrives whole', async () => {
  const r = await node("const b = Buffer.from('é'); process.stdout.write(b.subarray(0, 1)); setTimeout(() => process.stdout.write(b.subarray(1)), 50)");
  assert.equal(r.stdout, 'é');
});

test('timeoutMs kills a hung child with SIGKILL', async () => {
  const r = await node('setInterval(() => {}, 1000)', { timeoutMs: 200 });
  assert.deepEqual([r.code, r.signal], [null, 'SIGKILL']);
});

test('startProcess shows the output so far; a command that cannot start rejects', async () => {
  const p = startProcess(process.execPath, ['-e', "console.log('ready'); setInterval(() => {}, 1000)"]);
  while (!p.stdout().includes('ready')) await new Promise((r) => p.child.stdout!.once('data', r));
  p.child.kill('SIGTERM');
  assert.equal((await p.done).signal, 'SIGTERM');
  await assert.rejects(runProcess('/nonexistent/program', []), /ENOENT/);
  assert.equal(lastLines('a\nb\nc\n', 2), 'b | c');
});
