/**
 * Import boundaries, checked by `npm run check:imports` (part of `npm test`). One rule per line of
 * the project's guide: launcher/ and worker/ meet only in shared/ (the contract); each third-party
 * library enters through one file; no cycles. A broken rule names the rule, the importing file and
 * the imported one, and fails the test command.
 *
 * Parsing: TypeScript 7 has no JavaScript compiler API, so dependency-cruiser reads the sources with
 * swc (`options.parser`), which sees `import type` as well as value imports.
 */
/** An npm package by name: its resolved path under node_modules/. */
const pkg = (name) => `(^|/)node_modules/${name}/`;

/** Files matching `from` never import files matching `to` (paths relative to the repository root). */
const never = (name, from, to, comment) => ({ name, comment, severity: 'error', from: { path: from }, to: { path: to } });

/** Only files matching `entry` import the npm package `packageName`. */
const onlyThrough = (name, packageName, entry, comment) => ({
  name,
  comment,
  severity: 'error',
  from: { pathNot: entry },
  to: { path: pkg(packageName) },
});

const CONTRACT = 'launcher/ and worker/ never import each other: they meet in shared/ (env contract, errors, logging).';

module.exports = {
  forbidden: [
    never('launcher-not-worker', '^launcher/', '^worker/', CONTRACT),
    never('worker-not-launcher', '^worker/', '^launcher/', CONTRACT),
    never('shared-not-launcher-or-worker', '^shared/', '^(launcher|worker)/', 'shared/ is the contract both sides import; it depends on neither.'),
    onlyThrough(
      'zeromq-only-in-comm-zmq',
      'zeromq',
      '^worker/comm/zmq/',
      'Only worker/comm/zmq/ knows ZeroMQ; everything else talks to a ProcessGroup or a RingTransport.',
    ),
    onlyThrough(
      'tfjs-only-in-tf',
      '@tensorflow/[^/]+',
      '^worker/(tf|tf_wasm_kernels|wasm_gemm|wasm_fused)\\.ts$',
      'TensorFlow.js enters through worker/tf.ts (backend selection); import tf from there. tf.ts designates three more files, ' +
        'its kernel overrides worker/tf_wasm_kernels.ts, worker/wasm_gemm.ts and worker/wasm_fused.ts (type-only imports of tfjs).',
    ),
    onlyThrough('yargs-only-in-shared-yargs', 'yargs', '^shared/yargs\\.ts$', 'yargs enters through shared/yargs.ts.'),
    onlyThrough('winston-only-in-shared-logging', 'winston', '^shared/logging\\.ts$', 'winston enters through shared/logging.ts (one logger factory).'),
    { name: 'no-circular', comment: 'Imports point one way.', severity: 'error', from: {}, to: { circular: true } },
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
