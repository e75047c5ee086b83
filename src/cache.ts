import { mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

declare const VJAIL_BUILD_ID: string | undefined;

/**
 * The build id the bundler put in (the sha256 of the bundled CLI's text,
 * src/cli/bundle.ts), else undefined: the version of the code, for caches of
 * what the code computes.
 */
export const buildId: string | undefined = typeof VJAIL_BUILD_ID === 'string' ? VJAIL_BUILD_ID : undefined;

/** $VJAIL_CACHE_DIR, else $XDG_CACHE_HOME/vjail, else ~/.cache/vjail. */
export function cacheDir(): string {
  if (process.env.VJAIL_CACHE_DIR) return process.env.VJAIL_CACHE_DIR;
  if (process.env.XDG_CACHE_HOME) return join(process.env.XDG_CACHE_HOME, 'vjail');
  return join(homedir(), '.cache', 'vjail');
}

/**
 * A short file name for a cache slot (FNV-1a, two seeds). Only a name: two
 * slots sharing it overwrite each other's entry, they never read it, because
 * an entry is used only if the inputs stored in it are the caller's.
 */
export function slotName(slot: string): string {
  let a = 0x811c9dc5;
  let b = 0x01000193;
  for (let i = 0; i < slot.length; i++) {
    const c = slot.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
  }
  return (a >>> 0).toString(16).padStart(8, '0') + (b >>> 0).toString(16).padStart(8, '0');
}

/** Where the entry of `slot` under `kind` lives. */
export function entryPath(kind: string, slot: string, ext = 'json'): string {
  return join(cacheDir(), kind, `${slotName(slot)}.${ext}`);
}

interface Entry {
  inputs: string;
  value: unknown;
}

/**
 * The value cached under `kind` for `slot`, or undefined. An entry holds the
 * exact inputs its value was computed from (file texts, versions, the code's
 * fingerprint, …, serialised by the caller) and is a hit only if they equal
 * `inputs`: a changed input is a miss, whatever the slot. `check` validates
 * the value's shape and converts it (undefined: unusable, a miss too).
 */
export function readCached<T>(kind: string, slot: string, inputs: string, check: (value: unknown) => T | undefined): T | undefined {
  let entry: Entry;
  try {
    entry = JSON.parse(readFileSync(entryPath(kind, slot), 'utf8')) as Entry;
  } catch {
    return undefined;
  }
  if (typeof entry !== 'object' || entry === null || entry.inputs !== inputs) return undefined;
  try {
    return check(entry.value);
  } catch {
    return undefined;
  }
}

/** Store a value for `slot` computed from `inputs`; a cache that cannot be written is only slower, never an error. */
export function writeCached(kind: string, slot: string, inputs: string, value: unknown): void {
  writeEntry(entryPath(kind, slot), JSON.stringify({ inputs, value } satisfies Entry));
}

/**
 * mkdir -p, each missing directory tried once: Node's recursive mkdirSync
 * spins forever where mkdir keeps failing with ENOENT under an existing
 * parent (in /proc, say).
 */
function makeDirs(dir: string): void {
  try {
    mkdirSync(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return;
    if (code !== 'ENOENT' || dirname(dir) === dir) throw e;
    makeDirs(dirname(dir));
    mkdirSync(dir);
  }
}

/**
 * Write a cache file whole or not at all: to a temporary name, then renamed
 * over the old one, so a reader sees the old entry or the new one, never a
 * part. Errors (read-only home, full disk) are swallowed.
 */
export function writeEntry(file: string, data: string | Uint8Array): void {
  const tmp = `${file}.${process.pid}.${Date.now().toString(36)}.tmp`;
  try {
    makeDirs(dirname(file));
    writeFileSync(tmp, data);
    renameSync(tmp, file);
  } catch {
    try {
      unlinkSync(tmp);
    } catch {
      // never created
    }
  }
}
