/**
 * The image writer's chunk hashing (native/chunkhash.c: pairs of chunks with
 * the CPU's SHA instructions, OpenSSL for the rest) gives node:crypto's sha256
 * for every chunk, at and around the chunk size, from plain and shared memory.
 */
import { createHash, randomFillSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { native } from '../src/native.js';

const sha256Chunks = (native() as unknown as { sha256Chunks(data: Uint8Array, chunk: number): Buffer }).sha256Chunks;
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
