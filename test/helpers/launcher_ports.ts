/** Free loopback ports for launcher tests (test/helpers/ports.ts did not exist when these were written). */
import { canBind, freePort as pick } from '../../launcher/ports.js';

export function freePort(): Promise<number> {
  return pick('127.0.0.1');
}

/** A port p with p + 1 free too: a multi-node run's master port (node 0's launchers listen on p + 1). */
export async function freePortPair(): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (port < 65535 && (await canBind('127.0.0.1', port + 1))) return port;
  }
}
