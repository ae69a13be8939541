/**
 * Import boundaries, checked by `npm run check:imports` (part of `npm test`). One rule per line of
 * the project's guide: launcher/ and worker/ meet only in shared/ (the contract); each third-party
 * library enters through one file; no cycles. A broken rule names the rule, the importing file and
 * the imported one, and fails the test command.
 *
 * Parsing: TypeScript 7 has no JavaScript compiler API, so dependency-cruiser reads the sources with
 * swc (`options.parser`), which sees `import type` as well as value imports.
 */
/** An npm package by name: its resolved path under node_modules/ (the resolver follows symlinks). */
const pkg = (name) => `(^|/)node_modules/${name}/`;

module.exports = {
  forbidden: [
    {
      name: 'launcher-not-worker',
      comment: 'launcher/ and worker/ never import each other: they meet in shared/ (env contract, errors, logging).',
      severity: 'error',
      from: { path: '^launcher/' },
      to: { path: '^worker/' },
    },
    {
      name: 'worker-not-launcher',
      comment: 'launcher/ and worker/ never import each other: they meet in shared/ (env contract, errors, logging).',
      severity: 'error',
      from: { path: '^worker/' },
      to: { path: '^launcher/' },
    },
    {
      name: 'shared-not-launcher-or-worker',
      comment: 'shared/ is the contract both sides import; it depends on neither.',
      severity: 'error',
      from: { path: '^shared/' },
      to: { path: '^(launcher|worker)/' },
    },
    {
      name: 'zeromq-only-in-comm-zmq',
      comment: 'Only worker/comm/zmq/ knows ZeroMQ; everything else talks to a ProcessGroup or a Transport.',
      severity: 'error',
      from: { pathNot: '^worker/comm/zmq/' },
      to: { path: pkg('zeromq') },
    },
    {
      name: 'tfjs-only-in-tf',
      comment:
        'TensorFlow.js enters through worker/tf.ts (backend selection); import tf from there. tf.ts designates one more ' +
        'file: its kernel overrides, worker/tf_wasm_kernels.ts (type-only import of tfjs).',
      severity: 'error',
      from: { pathNot: '^worker/tf(_wasm_kernels)?\\.ts$' },
      to: { path: pkg('@tensorflow/[^/]+') },
    },
    {
      name: 'yargs-only-in-shared-yargs',
      comment: 'yargs enters through shared/yargs.ts.',
      severity: 'error',
      from: { pathNot: '^shared/yargs\\.ts$' },
      to: { path: pkg('yargs') },
    },
    {
      name: 'winston-only-in-shared-logging',
      comment: 'winston enters through shared/logging.ts (one logger factory).',
      severity: 'error',
      from: { pathNot: '^shared/logging\\.ts$' },
      to: { path: pkg('winston') },
    },
    {
      name: 'no-circular',
      comment: 'Imports point one way.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
  ],
  options: {
    parser: 'swc',
    // Only our code is cruised; a third-party package is a leaf (its own imports are its business).
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(logs|data)/' },
    // Resolve packages as Node does (their "exports" maps), so that every import resolves.
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'node', 'default'] },
  },
};
