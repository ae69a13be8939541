/**
 * A Python interpreter for the tests of Python workers, and PyTorch's anchors: found once per test
 * file, or a reason to skip that says what is missing.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packagePath } from '../../shared/runtime.js';

export type Found = { readonly python: string; readonly skip: undefined } | { readonly python: undefined; readonly skip: string };

/**
 * The first of $PYTHON, python3 on the PATH and /usr/bin/python3 (Debian's python3-torch lives
 * there, beside e.g. a pyenv python3 first on the PATH) that runs and, with `torch`, imports torch.
 */
export function findPython(opts: { torch: boolean }): Found {
  const candidates = [process.env.PYTHON, 'python3', '/usr/bin/python3'].filter((p): p is string => p !== undefined && p !== '');
  const code = opts.torch ? 'import torch.distributed.elastic.multiprocessing.errors' : 'import sys; assert sys.version_info >= (3, 8)';
  for (const python of new Set(candidates)) {
    if (spawnSync(python, ['-c', code], { stdio: 'ignore' }).status === 0) return { python, skip: undefined };
  }
  const tried = [...new Set(candidates)].join(', ');
  return {
    python: undefined,
    skip: opts.torch
      ? `no Python with torch (tried ${tried}): apt-get install python3-torch libopenblas0-pthread, or set PYTHON`
      : `no Python 3 (tried ${tried}): install python3, or set PYTHON`,
  };
}

/**
 * PyTorch's anchors (torchrun.sh, torch_ddp_ref.py): $ROSEDIST_ANCHORS, else `shared/anchors`
 * beside the checkout (<clone>/../shared/anchors, as scripts/bench_train.ts finds them).
 */
export function findAnchors(): { readonly dir: string; readonly skip: undefined } | { readonly dir: undefined; readonly skip: string } {
  const dir = process.env.ROSEDIST_ANCHORS || packagePath('../shared/anchors');
  if (existsSync(join(dir, 'torchrun.sh')) && existsSync(join(dir, 'torch_ddp_ref.py'))) return { dir, skip: undefined };
  return { dir: undefined, skip: `no PyTorch anchors at ${dir} (set ROSEDIST_ANCHORS to the folder holding torchrun.sh)` };
}
