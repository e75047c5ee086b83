/** The door to native/chunkhash.c: sha256 of page data chunk by chunk, two chunks at a time with the CPU's SHA instructions. */
import { native } from '../native.js';

interface ChunkHashAddon {
  /** The 32-byte sha256 of each `chunk` bytes of `data` in turn (the last piece may be shorter), one after another. */
  sha256Chunks(data: Uint8Array, chunk: number): Buffer;
  /** The 32-byte sha256 of chunk `indexes[k]` of file `fd`'s first `size` bytes, for each k, one after another; EIO if it is shorter. */
  sha256FileChunks(fd: number, chunk: number, size: number, indexes: Uint32Array): Buffer;
}

export const chunkHashAddon = (): ChunkHashAddon => native() as unknown as ChunkHashAddon;
