/**
 * The door to native/pagecopy.c: page data copied between vjail and a
 * stopped process, and writeback started on a file being written.
 */
import { native } from '../native.js';

interface PageCopyAddon {
  /** Bytes copied; fewer than buf.length at the first page it cannot access. */
  pageRead(pid: number, addr: bigint, buf: Buffer): number;
  pageWrite(pid: number, addr: bigint, buf: Buffer): number;
  /** sync_file_range(SYNC_FILE_RANGE_WRITE): start writeback of the range, without waiting for it. */
  syncFileRange(fd: number, offset: number, length: number): void;
  /** Each piece written whole at its offset, in order; throws at the first failure (those before it written). */
  pwriteAll(fd: number, pieces: Buffer[], offsets: Float64Array): void;
  /** Pieces of the file read into `buf`, `spans` three numbers each (where in buf, length, offset in the file): how many were read whole before the file ended. */
  preadAll(fd: number, buf: Buffer, spans: Float64Array): number;
}

export const pageCopyAddon = (): PageCopyAddon => native() as unknown as PageCopyAddon;
