/**
 * Suites that run on tfjs's wasm backend (our kernels, the tape walk): the one pair of hooks they
 * share. The backend is process-wide state and the other suites in a file's process assume cpu,
 * so the suite switches to wasm before its tests and back to cpu after them.
 */
import { after, before } from 'node:test';
import { initBackend } from '../../worker/tf.js';

/** Call inside a describe(): its tests start on wasm, and cpu is the backend again once they end. */
export function onWasmBackend(): void {
  before(async () => {
    await initBackend('wasm');
  });
  after(async () => {
    await initBackend('cpu');
  });
}
