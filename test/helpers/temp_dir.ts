/** Temporary directories for tests, removed when the test file's process exits (pass or fail). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const madeDirs: string[] = [];
process.once('exit', () => {
  for (const dir of madeDirs) rmSync(dir, { recursive: true, force: true });
});

/** A fresh <tmpdir>/rosedist-test-<label>-XXXXXX, removed when this test process exits. */
export function tempDir(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `rosedist-test-${label}-`));
  madeDirs.push(dir);
  return dir;
}
