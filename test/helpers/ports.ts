/** A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it; bind soon after). */
import { freePort as freePortOn } from '../../launcher/ports.js';

export function freePort(): Promise<number> {
  return freePortOn('127.0.0.1');
}
