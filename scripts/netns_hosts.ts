/**
 * Hosts made of network namespaces (../shared/cluster/netns-cluster.sh; root): their addresses
 * and running a command on one. Used by the cross-host benchmarks (bench_allreduce.ts,
 * bench_train.ts with --netns).
 */
import { readFileSync } from 'node:fs';

/** A namespace host's address, from the /etc/hosts netns-cluster.sh writes for it. */
export function netnsAddress(ns: string): string {
  const line = readFileSync(`/etc/netns/${ns}/hosts`, 'utf8')
    .split('\n')
    .find((l) => l.trim().split(/\s+/)[1] === ns);
  if (line === undefined) throw new Error(`no address of ${ns} in /etc/netns/${ns}/hosts: is the namespace cluster up?`);
  return line.trim().split(/\s+/)[0] as string;
}

/** `cmd args` on namespace host `ns`, or here when undefined. */
export const onHost = (ns: string | undefined, cmd: string, args: string[]): [string, string[]] =>
  ns === undefined ? [cmd, args] : ['ip', ['netns', 'exec', ns, cmd, ...args]];

/** A port for a run across namespaces (each has its own port space; no free-port probe reaches them). */
export const netnsPort = (): number => 20000 + Math.floor(Math.random() * 20000);
