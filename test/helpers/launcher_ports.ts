/** A multi-node run's master port for launcher tests: p with p + 1 free too (node 0's launcher listens on p + 1). */
import { canBind } from '../../launcher/ports.js';
import { freePort } from './ports.js';

export async function freePortPair(): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (port < 65535 && (await canBind('127.0.0.1', port + 1))) return port;
  }
}
