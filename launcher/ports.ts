/**
 * TCP ports for the run: a free one for a single-node run (a fixed default port is torchrun's most
 * reported annoyance: two runs on one host collide), kept out of the ephemeral range, and a check
 * that a port the user named can be bound, so that a busy port is a clear error before any worker
 * starts.
 */
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** Resolves true when `host:port` can be bound now (the probe socket is closed again). */
export function canBind(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/**
 * The kernel's ephemeral range [low, high]: the local ports it gives outgoing connections
 * (Linux's net.ipv4.ip_local_port_range; its default where that file is absent).
 */
export function ephemeralRange(procFile = '/proc/sys/net/ipv4/ip_local_port_range'): readonly [number, number] {
  try {
    const [low, high] = readFileSync(procFile, 'utf8').trim().split(/\s+/).map(Number);
    if (low !== undefined && high !== undefined && Number.isInteger(low) && Number.isInteger(high) && low > 0 && low <= high) return [low, high];
  } catch {
    // Not Linux: use Linux's default.
  }
  return [32768, 60999];
}

/**
 * A port that was free on `host` a moment ago, for rank 0 to listen on (MASTER_PORT). Picked
 * below the ephemeral range: between now and rank 0's bind (seconds, when Python imports torch)
 * any outgoing connection on the host may get an ephemeral port as its local port, and then rank 0
 * cannot listen there, or another rank's connect to it meets itself. The kernel's choice (an
 * ephemeral port) only when 64 random tries below the range find none.
 */
export async function freePort(host: string, range: readonly [number, number] = ephemeralRange()): Promise<number> {
  const low = range[0] > 20_000 ? 20_000 : 1024;
  const high = range[0] - 1;
  for (let i = 0; i < 64 && high >= low; i++) {
    const port = low + randomInt(high - low + 1);
    if (await canBind(host, port)) return port;
  }
  return kernelPort(host);
}

/** A port that was free on `host` a moment ago, picked by the kernel (an ephemeral one). */
function kernelPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ host, port: 0, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
