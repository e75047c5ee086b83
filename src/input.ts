/**
 * Reading a file the user names (a policy, a profile): it may be anything,
 * so it is opened without blocking (a FIFO would hang a plain read) and
 * without taking a controlling terminal, must be a regular file by fstat of
 * the descriptor opened (a link to /dev/zero or a FIFO is refused at once),
 * and its size is bounded before a byte is read. A symbolic link the user
 * names is followed, as by any command, but what it leads to must pass the
 * same checks. Image files are stricter still (src/image/read.ts: no links).
 */
import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';

/**
 * Larger than any real policy (Docker's default is 20 KiB): bounds what a
 * hostile file costs. Reading, checking and compiling the largest one takes
 * a fraction of a second, so a signal is never held back for long.
 */
export const POLICY_MAX_BYTES = 1 << 20;

export function describeKind(st: Stats): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isDirectory()) return 'a directory';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/**
 * The text of the regular file `path`, at most `max` bytes; otherwise
 * `refuse` is called with a one-line reason (no trailing advice: the caller
 * adds what fits).
 */
export function readUserFile(path: string, max: number, refuse: (why: string) => never): string {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    return refuse(`cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return refuse(`is ${describeKind(st)}, not a regular file`);
    if (st.size > max) return refuse(`is ${st.size} bytes, more than the ${max} allowed`);
    // One byte more than the size: a file that grew meanwhile is refused, never read without end.
    const buf = Buffer.alloc(st.size + 1);
    let off = 0;
    for (;;) {
      const n = readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
      if (off > st.size) return refuse('changed while it was read');
    }
    return buf.subarray(0, off).toString('utf8');
  } finally {
    closeSync(fd);
  }
}
