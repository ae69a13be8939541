/**
 * TCP ports for the run: a free one for a single-node run (a fixed default port is torchrun's most
 * reported annoyance: two runs on one host collide), and a check that a port the user named can be
 * bound, so that a busy port is a clear error before any worker starts.
 */
import { createServer } from 'node:net';

/** Resolves true when `host:port` can be bound now (the probe socket is closed again). */
export function canBind(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** A port that was free on `host` a moment ago (picked by the kernel). */
export function freePort(host: string): Promise<number> {
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
