/**
 * Files whose contents the image holds, because no path leads to them: a
 * memfd, a file deleted while open. Each file is saved once (by its device
 * and inode) however many descriptions are open on it, its bytes in a blob;
 * restore makes it once (`makeSavedFile`) and opens every description on it
 * again through /proc/self/fd, so descriptions of one file share one file.
 * A shared mapping of such a file can name the same `SavedFile` (by `id`)
 * and map the descriptor restore made for it.
 */
import { closeSync, readFileSync } from 'node:fs';
import { ImageError, readBlob, type SavedFile } from '../../../image/format.js';
import { sysOk } from '../../../native/fdio.js';
import { SYS } from '../../syscalls.js';
import type { CollectContext, CreateContext, FdStat } from './kind.js';
import { O_ACCMODE, O_CLOEXEC, O_NONBLOCK } from './kind.js';

const AT_FDCWD = -100;
const SEEK_SET = 0;
const saved = new WeakMap<CollectContext, Map<string, SavedFile>>();

/** The id every description of the file `st` shares. */
export const fileId = (st: FdStat): string => `${st.dev}:${st.ino}`;

/** Save the contents of the file descriptor `fd` of `pid` is open on (once per file), read through a fresh read-only open of it. */
export function saveFile(pid: number, fd: number, st: FdStat, ctx: CollectContext): SavedFile {
  const seen = saved.get(ctx) ?? new Map<string, SavedFile>();
  saved.set(ctx, seen);
  const id = fileId(st);
  const known = seen.get(id);
  if (known) return known;
  // A read-only open of its own: the description itself may be write-only, and its offset must not move.
  const data = readFileSync(`/proc/${pid}/fd/${fd}`);
  if (BigInt(data.length) !== st.size) throw new ImageError(`descriptor ${fd} of process ${pid} changed size while it was saved`);
  const file: SavedFile = { id, size: data.length, data: data.length ? ctx.writer.blob(data).file : null, mode: Number(st.mode & 0o7777n) };
  seen.set(id, file);
  return file;
}

/**
 * The file made again once: `open` makes an empty read-write file (close-on-exec),
 * filled here with its bytes and mode; `seal` runs after (seals forbid writing).
 * Returns our descriptor of it, closed once every process holds its own.
 */
export function makeSavedFile(file: SavedFile, ctx: CreateContext, open: () => number, seal?: (fd: number) => void): number {
  return ctx.once(`file:${file.id}`, () => {
    const fd = open();
    ctx.closeLater(fd);
    if (file.data) {
      const data = readBlob(ctx.image, file.data);
      for (let off = 0; off < data.length; ) {
        const chunk = data.subarray(off);
        const n = sysOk('writing a saved file back', SYS.pwrite64, fd, chunk, chunk.length, off);
        if (n <= 0) throw new ImageError(`a saved file took only ${off} of its ${data.length} bytes back`);
        off += n;
      }
    }
    sysOk('sizing a saved file', SYS.ftruncate, fd, file.size);
    sysOk('setting a saved file\'s mode', SYS.fchmod, fd, file.mode);
    seal?.(fd);
    return fd;
  });
}

/** A new description of the file behind our `fd`, opened with `flags` (access mode and status flags) at offset `pos`. */
export function openAgain(fd: number, flags: number, pos: bigint): number {
  const again = sysOk('opening a saved file again', SYS.openat, AT_FDCWD, Buffer.from(`/proc/self/fd/${fd}\0`), (flags & (O_ACCMODE | 0o2000 | 0o40000 | 0o1000000)) | O_CLOEXEC | O_NONBLOCK, 0);
  if (pos !== 0n) sysOk('seeking a saved file', SYS.lseek, again, pos, SEEK_SET);
  return again;
}

/** Close a descriptor of ours, whatever became of it. */
export function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}
