/**
 * Many small pieces of a file written or read in one native call
 * (native/pagecopy.c): a frozen jail's last pages into the pre-dump's
 * stores, and a migration's patches of them on both sides.
 */
import { randomFillSync } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pageCopyAddon } from '../src/native/pagecopy.js';

const { pwriteAll, preadAll } = pageCopyAddon();
const dir = mkdtempSync(join(tmpdir(), 'vjail-pagecopy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('pwriteAll and preadAll', () => {
  it('pwriteAll writes each piece at its offset, in order (a later piece over an earlier one wins), past the end too', () => {
    const path = join(dir, 'written');
    writeFileSync(path, Buffer.alloc(3 * 4096, 0xee));
    const pieces = [randomFillSync(Buffer.alloc(4096)), randomFillSync(Buffer.alloc(100)), randomFillSync(Buffer.alloc(4096)), randomFillSync(Buffer.alloc(10))];
    const offsets = [4096, 4096 + 50, 10 * 4096, 4096 + 120];
    const want = Buffer.alloc(11 * 4096);
    want.fill(0xee, 0, 3 * 4096);
    pieces.forEach((p, i) => p.copy(want, offsets[i]));
    const fd = openSync(path, 'r+');
    try {
      pwriteAll(fd, pieces, Float64Array.from(offsets));
    } finally {
      closeSync(fd);
    }
    expect(readFileSync(path).equals(want)).toBe(true);
  });

  it('pwriteAll writes a piece longer than one write (256 KiB) whole, from an offset that is not page-aligned', () => {
    const path = join(dir, 'long');
    writeFileSync(path, Buffer.alloc(0));
    const piece = randomFillSync(Buffer.alloc((1 << 20) + 123));
    const fd = openSync(path, 'r+');
    try {
      pwriteAll(fd, [piece, piece.subarray(0, 10)], Float64Array.from([777, 777 + (256 << 10) - 5]));
    } finally {
      closeSync(fd);
    }
    const want = Buffer.concat([Buffer.alloc(777), piece]);
    piece.subarray(0, 10).copy(want, 777 + (256 << 10) - 5);
    expect(readFileSync(path).equals(want)).toBe(true);
  });

  it('preadAll reads each piece into its place, and counts the pieces read whole before one meets the end of the file', () => {
    const path = join(dir, 'read');
    const data = randomFillSync(Buffer.alloc(5 * 4096));
    writeFileSync(path, data);
    const fd = openSync(path, 'r');
    try {
      const buf = Buffer.alloc(3 * 4096);
      // [where in buf, length, offset in the file]
      expect(preadAll(fd, buf, Float64Array.from([0, 4096, 4 * 4096, 4096, 8192, 0]))).toBe(2);
      expect(buf.subarray(0, 4096).equals(data.subarray(4 * 4096))).toBe(true);
      expect(buf.subarray(4096, 3 * 4096).equals(data.subarray(0, 8192))).toBe(true);
      expect(preadAll(fd, buf, Float64Array.from([0, 4096, 0, 4096, 4096, 5 * 4096 - 100, 8192, 10, 0]))).toBe(1);
    } finally {
      closeSync(fd);
    }
  });

  it('refuses pieces outside the buffer, offsets that are not file offsets, and says what failed with its errno', () => {
    const fd = openSync(join(dir, 'read'), 'r');
    try {
      expect(() => preadAll(fd, Buffer.alloc(100), Float64Array.from([50, 100, 0]))).toThrow(/outside the buffer/);
      expect(() => preadAll(fd, Buffer.alloc(100), Float64Array.from([0, 10]))).toThrow(/three numbers/);
      expect(() => pwriteAll(fd, [Buffer.alloc(1)], Float64Array.from([-1]))).toThrow(/not a file offset/);
      expect(() => pwriteAll(fd, [Buffer.alloc(1)], Float64Array.from([0, 1]))).toThrow(/one offset per piece/);
      // Open for reading only: the kernel's EBADF, named.
      expect(() => pwriteAll(fd, [Buffer.alloc(1)], Float64Array.from([0]))).toThrow(expect.objectContaining({ code: 'EBADF', syscall: 'pwrite' }));
    } finally {
      closeSync(fd);
    }
  });
});
