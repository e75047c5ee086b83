import { createRequire } from 'node:module';
import type * as Zod from 'zod';

let loaded: typeof Zod | undefined;

/**
 * zod, loaded on first use. Importing it costs tens of milliseconds, more
 * than everything else `vjail run` does before the jail starts, and most runs
 * never need it: validated profiles come from the cache (src/cache.ts).
 * Loaded through require so that synchronous callers can validate too.
 */
export function zod(): typeof Zod {
  loaded ??= createRequire(import.meta.url)('zod') as typeof Zod;
  return loaded;
}
