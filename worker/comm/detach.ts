/**
 * Free an ArrayBuffer's memory now instead of at V8's next collection: `detach(ab)` empties it
 * (byteLength 0; every view of it then has length 0) and drops its backing store, whose owner's
 * finalizer (for a buffer zeromq.js received: zmq_msg_close and the external-memory count back
 * down) then runs on the next turn of the event loop.
 *
 * Why: zeromq.js hands each received message to JavaScript as an external buffer and reports its
 * size to V8 as external memory; V8 answers every ~16–32 MiB of it with a mark-compact ("external
 * memory pressure" in --trace-gc), 2–7 per 16–64 MiB all-reduce, each 4–120 ms on a busy
 * machine. Detached as soon as the ring is done with them, the received buffers never add up
 * (measured: 1 GiB received in 1 MiB messages, 30 collections before, 1–2 after).
 *
 * How: ArrayBuffer.prototype.transfer(0) (ES2024) moves the contents to a new, empty buffer and
 * detaches the old one. Node 22 has it; Node 20's V8 (11.3) has it behind
 * --harmony-rab-gsab-transfer, which takes effect in contexts created after it is set. So, once:
 * set the flag, take `transfer` from a fresh vm context (a builtin that works on any realm's
 * ArrayBuffer), and clear the flag again so that nothing else in this process changes. Where
 * neither works, `detach` returns false and the buffer is left to the collector, as before.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type Transfer = (this: ArrayBuffer, newLength?: number) => ArrayBuffer;

let transfer: Transfer | null | undefined;

function findTransfer(): Transfer | null {
  const native = (ArrayBuffer.prototype as { transfer?: Transfer }).transfer;
  if (typeof native === 'function') return native;
  try {
    setFlagsFromString('--harmony-rab-gsab-transfer');
    const fn = runInNewContext('ArrayBuffer.prototype.transfer') as unknown;
    return typeof fn === 'function' ? (fn as Transfer) : null;
  } catch {
    return null;
  } finally {
    setFlagsFromString('--no-harmony-rab-gsab-transfer');
  }
}

/** Whether this Node can detach buffers (see the top comment). */
export function canDetach(): boolean {
  transfer ??= findTransfer();
  return transfer !== null;
}

/**
 * Empty `ab` and release its memory now. The caller must be the last user of every view of it:
 * afterwards they all read as empty. False where this Node cannot, or `ab` cannot be detached
 * (a WebAssembly memory, a SharedArrayBuffer): nothing changed then.
 */
export function detach(ab: ArrayBuffer): boolean {
  if (!canDetach()) return false;
  try {
    transfer!.call(ab, 0);
    return true;
  } catch {
    return false;
  }
}
