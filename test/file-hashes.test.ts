/**
 * The hashes of mapped files that checkpoint and restore compare are kept
 * in the cache (src/checkpoint/parts/memory.ts FileHashes): a file seen
 * before is not hashed again while its size, mtime and ctime stay, and a
 * file written since is, even with its size and mtime put back.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { entryPath } from '../src/cache.js';
import { FileHashes } from '../src/checkpoint/parts/memory.js';

const dir = mkdtempSync(join(tmpdir(), 'vjail-file-hashes-'));
const sha = (data: string): string => createHash('sha256').update(data).digest('hex');
let savedCacheDir: string | undefined;

beforeAll(() => {
  savedCacheDir = process.env.VJAIL_CACHE_DIR;
  process.env.VJAIL_CACHE_DIR = join(dir, 'cache');
});

afterAll(() => {
  if (savedCacheDir === undefined) delete process.env.VJAIL_CACHE_DIR;
  else process.env.VJAIL_CACHE_DIR = savedCacheDir;
  rmSync(dir, { recursive: true, force: true });
});

describe('hashes of mapped files, cached', () => {
  it('are read from the cache while a file is unchanged, and hashed again once it is written, even with its size and mtime put back', async () => {
    const file = join(dir, 'lib.so');
    writeFileSync(file, 'first contents');
    // A whole second, which utimes can put back exactly.
    utimesSync(file, 1_700_000_000, 1_700_000_000);
    const st = statSync(file);
    const first = new FileHashes();
    expect(first.of(file, st)).toBe(sha('first contents'));
    // Nothing is written to the cache until persist (not while a jail is held).
    const entry = entryPath('file-hashes', `${st.dev}:${st.ino}`);
    expect(() => readFileSync(entry)).toThrow();
    first.persist();
    const kept = JSON.parse(readFileSync(entry, 'utf8')) as { inputs: string; value: string };
    expect(kept.value).toBe(sha('first contents'));

    // A fresh instance (another process) takes the cached value: shown by one planted in the entry.
    writeFileSync(entry, JSON.stringify({ inputs: kept.inputs, value: sha('planted') }));
    expect(new FileHashes().of(file, statSync(file))).toBe(sha('planted'));

    // Same size, mtime put back: the ctime still moves, and the file is hashed again.
    await new Promise((r) => setTimeout(r, 20));
    writeFileSync(file, 'other contents');
    utimesSync(file, 1_700_000_000, 1_700_000_000);
    const after = statSync(file);
    expect(after.size).toBe(st.size);
    expect(after.mtimeMs).toBe(st.mtimeMs);
    expect(after.ctimeMs).not.toBe(st.ctimeMs);
    expect(new FileHashes().of(file, after)).toBe(sha('other contents'));
  });

  it('an entry that is not a sha256 is a miss, not an answer', () => {
    const file = join(dir, 'other.so');
    writeFileSync(file, 'contents');
    const st = statSync(file);
    const h = new FileHashes();
    h.of(file, st);
    h.persist();
    const entry = entryPath('file-hashes', `${st.dev}:${st.ino}`);
    const kept = JSON.parse(readFileSync(entry, 'utf8')) as { inputs: string };
    writeFileSync(entry, JSON.stringify({ inputs: kept.inputs, value: 'not a digest' }));
    expect(new FileHashes().of(file, st)).toBe(sha('contents'));
  });
});
