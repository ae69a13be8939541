/**
 * How to start a TypeScript program in a new Node process: through tsx's loader, resolved from
 * this package (so it works from any working directory), as `node <nodeArgs> program.ts`.
 */
import { fileURLToPath } from 'node:url';

/** Node flags that make `node` run `.ts` files. */
export function tsNodeArgs(): string[] {
  return ['--import', import.meta.resolve('tsx')];
}

/** Absolute path of a file of this package, from its path relative to the package root. */
export function packagePath(relative: string): string {
  return fileURLToPath(new URL(`../${relative}`, import.meta.url));
}
