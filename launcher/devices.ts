/**
 * How many NVIDIA GPUs this host has, for `--nproc-per-node gpu|auto` and CUDA_VISIBLE_DEVICES.
 * The driver lists one directory per GPU under /proc/driver/nvidia/gpus; without it (containers
 * often hide /proc/driver) we ask `nvidia-smi -L`, which prints one "GPU n: ..." line per GPU.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';

export interface GpuProbe {
  /** Directory with one entry per GPU. */
  readonly procDir: string;
  /** The nvidia-smi executable (looked up on PATH). */
  readonly nvidiaSmi: string;
}

const defaultProbe: GpuProbe = { procDir: '/proc/driver/nvidia/gpus', nvidiaSmi: 'nvidia-smi' };

/** Number of NVIDIA GPUs; 0 when there are none or no driver. Never throws. */
export function countGpus(probe: GpuProbe = defaultProbe): number {
  try {
    const n = readdirSync(probe.procDir).length;
    if (n > 0) return n;
  } catch {
    // No driver directory: ask nvidia-smi.
  }
  try {
    const out = execFileSync(probe.nvidiaSmi, ['-L'], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] });
    return out.split('\n').filter((line) => /^GPU \d+:/.test(line)).length;
  } catch {
    return 0;
  }
}

/**
 * CUDA_VISIBLE_DEVICES for the worker of `localRank`: its own GPU. A user's list ("2,3") is
 * respected by picking the localRank-th entry; undefined when there is nothing to set.
 */
export function visibleDeviceFor(localRank: number, gpuCount: number, userValue: string | undefined): string | undefined {
  if (userValue !== undefined && userValue !== '') {
    const list = userValue
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    if (list.length <= 1) return userValue;
    return list[localRank % list.length];
  }
  return gpuCount > 0 ? String(localRank % gpuCount) : undefined;
}
