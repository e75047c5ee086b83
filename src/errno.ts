import { constants } from 'node:os';

const names = new Map<number, string>();
for (const [name, n] of Object.entries(constants.errno)) if (!names.has(n)) names.set(n, name);

/** The symbolic name of an errno (ENOENT), or "errno N" for one Node does not know. */
export function errnoName(n: number): string {
  return names.get(n) ?? `errno ${n}`;
}
