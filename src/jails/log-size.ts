/**
 * A bounded log for a detached jail (`--log-max-size`). The jail's output
 * goes into a pipe (LogPipe, log-pipe.ts) that the background supervisor reads; the
 * supervisor appends what it reads to the log file (its own stdout, opened
 * for appending) and, once the live part passes the bound, copies that part
 * to `log.1` (replacing the previous one) and frees it in the log in place
 * (a hole punched from 0: the size stays, later appends go on at the end).
 * `log.start` says where the live part begins (and which `log.1` ends there). Rotating at each append, not
 * at a later look, bounds what is stored however fast the jail writes: the
 * live part and `log.1` are each at most the bound plus one read of the pipe
 * (READ_BYTES), and a jail that writes faster waits on the full pipe.
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync, renameSync, writeSync } from 'node:fs';
import { UsageError } from '../cli/errors.js';
import { native } from '../native.js';
import { writeAtomic } from './state.js';

/** Below this a bound would rotate on every append. */
const MIN_BYTES = 4096;
/** The most one read of the jail's log pipe brings (libuv's read buffer): what the log may pass the bound by before it rotates. */
export const READ_BYTES = 64 * 1024;

const UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** "10M", "512k", "1G" or a number of bytes. */
export function parseLogSize(text: string): number {
  const m = /^(\d+)([kmg]?)(?:i?b)?$/i.exec(text.trim());
  const bytes = m ? Number(m[1]) * UNITS[m[2]!.toLowerCase()]! : NaN;
  if (!Number.isSafeInteger(bytes) || bytes < MIN_BYTES) {
    throw new UsageError(`--log-max-size ${JSON.stringify(text)} is not a size of at least 4k; give bytes or a number with k, M or G, e.g. 10M`);
  }
  return bytes;
}

/** The rotated part of log `path`. */
export const rotatedPath = (path: string): string => `${path}.1`;
const startPath = (path: string): string => `${path}.start`;

/**
 * Where the live part of log `path` begins (0 when it was never rotated),
 * and the inode of the `log.1` that ends there (undefined where an older
 * vjail wrote the offset alone).
 */
export function liveStart(path: string): { start: number; rotatedIno?: number } {
  try {
    const [start, ino] = readFileSync(startPath(path), 'utf8').trim().split(' ').map(Number);
    if (!Number.isSafeInteger(start) || start! <= 0) return { start: 0 };
    return Number.isSafeInteger(ino) ? { start: start!, rotatedIno: ino } : { start: start! };
  } catch {
    return { start: 0 };
  }
}

/** Copy bytes [from, to) of `path` into a new file `dest`; returns its inode. */
function copyRange(path: string, from: number, to: number, dest: string): number {
  const src = openSync(path, 'r');
  const out = openSync(dest, 'w', 0o644);
  try {
    const buf = Buffer.alloc(1 << 20);
    for (let at = from; at < to; ) {
      const n = readSync(src, buf, 0, Math.min(buf.length, to - at), at);
      if (n === 0) break;
      writeSync(out, buf, 0, n);
      at += n;
    }
    return fstatSync(out).ino;
  } finally {
    closeSync(src);
    closeSync(out);
  }
}

/** How long a reader waits for a rotation under way to finish. */
const ROTATION_WAIT_MS = 5000;

/**
 * Pass the bytes of log `path` from `offset` on to `write`, those rotated
 * out of it from `log.1` while it holds them (older ones are gone), and
 * return the offset reached. Consistent with a rotation at any moment: a
 * piece read is passed on only if `log.start` still says what it said
 * before the piece was read (a rotation writes it before it frees
 * anything), and `log.1` is read only when it is the file `log.start`
 * names.
 */
export function copyLogFrom(path: string, offset: number, write: (data: Buffer) => void): number {
  const buf = Buffer.alloc(1 << 16);
  const pause = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + ROTATION_WAIT_MS;
  for (;;) {
    const { start, rotatedIno } = liveStart(path);
    const steady = (): boolean => liveStart(path).start === start;
    const rotatedDone = offset >= start || copyRotated(path, start, rotatedIno, offset, buf, write);
    if (rotatedDone) {
      if (offset < start) offset = start;
      const fd = openOrUndefined(path);
      if (fd === undefined) return offset;
      try {
        for (;;) {
          const n = readSync(fd, buf, 0, buf.length, offset);
          if (!steady()) break; // rotated meanwhile: what was read may have been freed; log.1 has it now
          if (n === 0) return offset;
          write(buf.subarray(0, n));
          offset += n;
        }
      } finally {
        closeSync(fd);
      }
    }
    if (Date.now() > deadline) throw new Error(`the log ${path} kept rotating under the reader for ${ROTATION_WAIT_MS / 1000} s`);
    Atomics.wait(pause, 0, 0, 1);
  }
}

/**
 * Pass on what `log.1` (the bytes before `start`) holds from `offset` on;
 * false when it is not yet the file `log.start` names (a rotation under way).
 */
function copyRotated(path: string, start: number, ino: number | undefined, offset: number, buf: Buffer, write: (data: Buffer) => void): boolean {
  const fd = openOrUndefined(rotatedPath(path));
  // Named but not yet in place: a first rotation under way. Not named (an older vjail's log.start): nothing kept.
  if (fd === undefined) return ino === undefined;
  try {
    const st = fstatSync(fd);
    if (ino !== undefined && st.ino !== ino) return false;
    // log.1 holds [start - its size, start): once it is the named one it is never written again.
    for (let at = Math.max(0, offset - (start - st.size)); ; ) {
      const n = readSync(fd, buf, 0, buf.length, at);
      if (n === 0) return true;
      write(buf.subarray(0, n));
      at += n;
    }
  } finally {
    closeSync(fd);
  }
}

function openOrUndefined(path: string): number | undefined {
  try {
    return openSync(path, 'r');
  } catch {
    return undefined;
  }
}

/** The log could not be written; `written` bytes of what was given were. */
export class LogWriteError extends Error {
  constructor(
    readonly reason: NodeJS.ErrnoException,
    readonly written: number,
  ) {
    super(`the log cannot be written (${reason.code ?? reason.message})`);
  }
}

/**
 * The log on descriptor `fd` (named `path`, opened for appending), kept
 * within `maxBytes` by rotating as soon as an append takes its live part
 * past it.
 */
export class BoundedLog {
  private start: number;
  private bounded = true;

  constructor(
    private readonly fd: number,
    private readonly path: string,
    private readonly maxBytes: number,
  ) {
    this.start = liveStart(path).start;
  }

  /**
   * Append all of `data` (throws where the log cannot be written); past the
   * bound, rotate after its last whole line (log.1 then begins with one).
   */
  append(data: Buffer): void {
    for (let done = 0; done < data.length; ) {
      try {
        done += writeSync(this.fd, data, done, data.length - done);
      } catch (e) {
        throw new LogWriteError(e as NodeJS.ErrnoException, done);
      }
    }
    if (!this.bounded) return;
    try {
      const size = fstatSync(this.fd).size;
      if (size - this.start <= this.maxBytes) return;
      const newline = data.lastIndexOf(10);
      this.rotate(newline < 0 ? size : size - (data.length - newline - 1));
    } catch (e) {
      this.bounded = false;
      // Gone with the jail's directory (vjail rm): nothing to say. Else the log says why it is no longer bounded.
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') process.stderr.write(`vjail: warning: --log-max-size: the log cannot be bounded here (${code ?? String(e)}); it grows on\n`);
    }
  }

  /**
   * Copy the live part up to `at` to a new log.1, say where the log now starts (and
   * which log.1 ends there), put that log.1 in place, and only then free
   * the part in the log: a reader (copyLogFrom) never finds freed bytes
   * behind the start it read.
   */
  private rotate(at: number): void {
    const tmp = `${rotatedPath(this.path)}.tmp`;
    const ino = copyRange(this.path, this.start, at, tmp);
    writeAtomic(startPath(this.path), `${at} ${ino}`);
    renameSync(tmp, rotatedPath(this.path));
    native().punchHole(this.fd, 0, at);
    this.start = at;
  }
}
