/**
 * The sha256 of each `chunk` bytes of a pre-dump store, kept up to date as
 * the store is written, so that a page file made of it has its chunk
 * digests without hashing it whole while the jail is stopped: only the
 * chunks written since the last look are read and hashed again, in C
 * (native/chunkhash.c: two at a time with the CPU's SHA instructions).
 */
import { isNativeError } from 'node:util/types';
import { chunkHashAddon } from '../native/chunkhash.js';

export class StoreDigests {
  /** 32 bytes a chunk. */
  private sums = Buffer.alloc(0);
  /** The bytes each chunk's digest is of; 0 once written since (a last chunk may grow). */
  private readonly lens: number[] = [];

  constructor(readonly chunk: number) {}

  /** [offset, offset + len) was written. */
  written(offset: number, len: number): void {
    for (let i = Math.floor(offset / this.chunk); i * this.chunk < offset + len; i++) this.lens[i] = 0;
  }

  /** The digests of the first `size` bytes of the store (`fd`), 32 bytes each (a copy); null if it is shorter. */
  upToDate(fd: number, size: number): Buffer | null {
    const count = Math.ceil(size / this.chunk);
    const lenOf = (i: number): number => Math.min(this.chunk, size - i * this.chunk);
    if (this.sums.length < count * 32) {
      const grown = Buffer.alloc(count * 32);
      this.sums.copy(grown);
      this.sums = grown;
    }
    const stale: number[] = [];
    for (let i = 0; i < count; i++) if (this.lens[i] !== lenOf(i)) stale.push(i);
    if (stale.length) {
      let fresh: Buffer;
      try {
        fresh = chunkHashAddon().sha256FileChunks(fd, this.chunk, size, Uint32Array.from(stale));
      } catch (e) {
        if (isNativeError(e) && (e as NodeJS.ErrnoException).code === 'EIO') return null;
        throw e;
      }
      stale.forEach((i, k) => {
        fresh.copy(this.sums, i * 32, k * 32, k * 32 + 32);
        this.lens[i] = lenOf(i);
      });
    }
    return Buffer.from(this.sums.subarray(0, count * 32));
  }
}
