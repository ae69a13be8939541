/**
 * Reading environment variables that must hold something: the first set one among several names,
 * and integers in a range. A bad value is a ConfigError naming the variable and its text.
 */
import { ConfigError } from './errors.js';

export type Env = Readonly<Record<string, string | undefined>>;

/** First non-empty value among `names`, with the name it came from. */
export function pick(env: Env, names: readonly string[]): { name: string; value: string } | undefined {
  for (const name of names) {
    const value = env[name];
    if (value !== undefined && value !== '') return { name, value };
  }
  return undefined;
}

/** The integer in the first set variable of `names`; `fallback` when none is set. */
export function intVar(env: Env, names: readonly string[], fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const found = pick(env, names);
  if (found === undefined) return fallback;
  const n = Number(found.value);
  if (!/^-?\d+$/.test(found.value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new ConfigError(
      `environment variable ${found.name}=${JSON.stringify(found.value)} is not an integer in [${min}, ${max}]`,
      `set ${found.name} to a valid value, or unset it`,
    );
  }
  return n;
}

/** Like intVar, for a variable that must be set. */
export function requiredInt(env: Env, names: readonly string[], min: number, why: string): number {
  if (pick(env, names) === undefined) {
    throw new ConfigError(`${names.join(' / ')} is not set, but ${why}`, `set ${names[0]}, or start the process the usual way for its scheduler`);
  }
  return intVar(env, names, 0, min);
}
