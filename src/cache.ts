import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** $VJAIL_CACHE_DIR, else $XDG_CACHE_HOME/vjail, else ~/.cache/vjail. */
export function cacheDir(): string {
  if (process.env.VJAIL_CACHE_DIR) return process.env.VJAIL_CACHE_DIR;
  if (process.env.XDG_CACHE_HOME) return join(process.env.XDG_CACHE_HOME, 'vjail');
  return join(homedir(), '.cache', 'vjail');
}

/** A cache key: the hash of everything the cached value was computed from. */
export function cacheKey(...parts: (string | Buffer)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest('hex').slice(0, 32);
}

function entryPath(kind: string, key: string): string {
  return join(cacheDir(), kind, `${key}.json`);
}

/**
 * A value cached under `kind`/`key`, or undefined. Entries are only ever
 * written whole (temp + rename), so a hit is a value that was computed from
 * exactly the inputs hashed into `key`.
 */
export function readCached<T>(kind: string, key: string): T | undefined {
  try {
    return JSON.parse(readFileSync(entryPath(kind, key), 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/** Store a value; a cache that cannot be written is only slower, never an error. */
export function writeCached(kind: string, key: string, value: unknown): void {
  const file = entryPath(kind, key);
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    mkdirSync(join(cacheDir(), kind), { recursive: true });
    writeFileSync(tmp, JSON.stringify(value));
    renameSync(tmp, file);
  } catch {
    // read-only home, full disk: carry on uncached
  }
}
