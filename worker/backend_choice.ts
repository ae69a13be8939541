/**
 * The compute backends a run may ask for (`--backend`); worker/tf.ts starts the chosen one. Kept
 * apart from tf.ts so that the training config can list them without loading TensorFlow.js.
 */
export const BACKEND_CHOICES = ['auto', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];
