/**
 * The image writer's chunk hashing (native/chunkhash.c: pairs of chunks with
 * the CPU's SHA instructions, OpenSSL for the rest) gives node:crypto's sha256
 * for every chunk, at and around the chunk size, from plain and shared memory;
 * and so does a migration's store digests (src/migrate/store-digests.ts),
 * which read scattered chunks from a file and hash only those written since.
 */
import { createHash, randomFillSync } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { chunkHashAddon } from '../src/native/chunkhash.js';
import { StoreDigests } from '../src/migrate/store-digests.js';

const { sha256Chunks } = chunkHashAddon();
const CHUNK = 256 * 1024;

function expected(data: Uint8Array, chunk: number): Buffer {
  const sums: Buffer[] = [];
  for (let at = 0; at < data.length; at += chunk) sums.push(createHash('sha256').update(data.subarray(at, Math.min(data.length, at + chunk))).digest());
  return Buffer.concat(sums);
}

describe('sha256Chunks', () => {
  it('matches node:crypto chunk by chunk for lengths at and around the chunk size', () => {
    for (const len of [0, 1, 63, 64, 65, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 5, 4 * CHUNK, 7 * CHUNK + 4095]) {
      const data = randomFillSync(new Uint8Array(len));
      expect(sha256Chunks(data, CHUNK).equals(expected(data, CHUNK)), `length ${len}`).toBe(true);
    }
  });

  it('matches for small chunk sizes (every block boundary) and for memory shared between threads', () => {
    for (const chunk of [1, 55, 56, 64, 119, 120, 128, 4096]) {
      const data = randomFillSync(new Uint8Array(chunk * 5 + 3));
      expect(sha256Chunks(data, chunk).equals(expected(data, chunk)), `chunk ${chunk}`).toBe(true);
    }
    const shared = randomFillSync(new Uint8Array(new SharedArrayBuffer(1 << 20)));
    expect(sha256Chunks(shared.subarray(CHUNK), CHUNK).equals(expected(shared.subarray(CHUNK), CHUNK))).toBe(true);
  });

  it('refuses what is not a Uint8Array and a chunk size that is not positive', () => {
    expect(() => sha256Chunks(new Uint16Array(4) as unknown as Uint8Array, CHUNK)).toThrow(/Uint8Array/);
    expect(() => sha256Chunks(new Uint8Array(4), 0)).toThrow(/chunk size/);
  });
});

describe('a store\'s chunk digests', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vjail-store-digests-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const CH = 64 * 1024;

  /** A file of `data`, open for `use`, closed after. */
  function withFile(name: string, data: Uint8Array, use: (fd: number) => void): void {
    const fd = openSync(join(dir, name), 'w+');
    try {
      writeSync(fd, data);
      use(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** sha256FileChunks of the chunks in `order` of `data` (in fd) gives each one's digest, in that order. */
  function expectInOrder(fd: number, data: Uint8Array, order: number[]): void {
    const all = expected(data, CH);
    const got = chunkHashAddon().sha256FileChunks(fd, CH, data.length, Uint32Array.from(order));
    expect(got.length).toBe(order.length * 32);
    order.forEach((i, k) => expect(got.subarray(k * 32, k * 32 + 32).equals(all.subarray(i * 32, i * 32 + 32)), `chunk ${i} at ${k}`).toBe(true));
  }

  it('sha256FileChunks hashes the chunks named, in the order named, the last one short, and says EIO past the end of the file', () => {
    const data = randomFillSync(new Uint8Array(9 * CH + 1000));
    withFile('scattered', data, (fd) => {
      expectInOrder(fd, data, [7, 0, 9, 3, 4, 1, 8]);
      expect(() => chunkHashAddon().sha256FileChunks(fd, CH, data.length + 2 * CH, Uint32Array.from([10]))).toThrow(/EIO/);
      expect(() => chunkHashAddon().sha256FileChunks(fd, CH, data.length, Uint32Array.from([10]))).toThrow(/past the end/);
    });
  });

  it('sha256FileChunks gives the same digests when it splits many chunks between two threads, and says EIO from either half', () => {
    const data = randomFillSync(new Uint8Array(40 * CH + 1000));
    withFile('many', data, (fd) => {
      // 41 chunks (odd), out of order, the short last one in the second half, one named twice.
      const order = [...Array.from({ length: 41 }, (_, i) => (i * 17) % 41), 5];
      expectInOrder(fd, data, order);
      const beyond = 44; // within the size said, past the file's end
      for (const at of [0, order.length - 1]) {
        const bad = [...order];
        bad[at] = beyond;
        expect(() => chunkHashAddon().sha256FileChunks(fd, CH, (beyond + 1) * CH, Uint32Array.from(bad))).toThrow(/EIO/);
      }
    });
  });

  it('StoreDigests stays equal to hashing the whole store as it is written here and there, and grows with it', () => {
    const size = 20 * CH;
    const data = randomFillSync(new Uint8Array(size));
    const fd = openSync(join(dir, 'store'), 'w+');
    try {
      const d = new StoreDigests(CH);
      writeSync(fd, data, 0, 12 * CH + 100, 0);
      d.written(0, 12 * CH + 100);
      expect(d.upToDate(fd, 12 * CH + 100)?.toString('hex')).toBe(expected(data.subarray(0, 12 * CH + 100), CH).toString('hex'));
      // Pages written across chunk boundaries, and the last chunk grown.
      for (const [at, len] of [[3 * CH - 10, 20], [7 * CH, 4096], [12 * CH + 100, 8 * CH - 100]] as const) {
        randomFillSync(data, at, len);
        writeSync(fd, data, at, len, at);
        d.written(at, len);
      }
      expect(d.upToDate(fd, size)?.toString('hex')).toBe(expected(data, CH).toString('hex'));
      // Nothing written since: the same answer, and a store shorter than said gives null.
      expect(d.upToDate(fd, size)?.toString('hex')).toBe(expected(data, CH).toString('hex'));
      d.written(size, CH);
      expect(d.upToDate(fd, size + CH)).toBeNull();
    } finally {
      closeSync(fd);
    }
  });
});
