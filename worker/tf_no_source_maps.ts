/**
 * tfjs loads without its source maps. While source maps are on (tsx turns them on, so that stack
 * traces through our TypeScript name its lines), Node reads and parses the map of every module it
 * compiles and keeps it: tfjs's dist files carry ~10 MB of maps, ~30 MB of each worker's memory
 * once parsed (peak RSS, `npm run bench:train`), for stack frames inside tfjs's bundles that we
 * never read. Our own modules keep theirs: ESM modules are compiled, and their maps read, while
 * the module graph is linked, before any of it runs.
 *
 * Importing this module turns source maps off; it must be worker/tf.ts's FIRST import, so that
 * it runs before tfjs's CommonJS files are compiled (they are compiled when they run, in import
 * order); tf.ts then calls `restoreSourceMaps()`, and loads its later, dynamic imports of tfjs
 * packages through `importWithoutSourceMaps`. On Node before 20.7 (no process.sourceMapsEnabled
 * to restore from) nothing is changed.
 */

/** Whether source maps were on before this module ran; undefined: unknown (left alone). */
const before: boolean | undefined = (process as { sourceMapsEnabled?: boolean }).sourceMapsEnabled;
if (before !== undefined) process.setSourceMapsEnabled(false);

/** Source maps back as they were before this module ran. */
export function restoreSourceMaps(): void {
  if (before !== undefined) process.setSourceMapsEnabled(before);
}

/** `load()` (a dynamic import of third-party code) with source maps off meanwhile. */
export async function importWithoutSourceMaps<T>(load: () => Promise<T>): Promise<T> {
  if (before === undefined) return load();
  const now = process.sourceMapsEnabled;
  process.setSourceMapsEnabled(false);
  try {
    return await load();
  } finally {
    process.setSourceMapsEnabled(now);
  }
}
