/**
 * The pipe a detached jail's output goes into when its log is bounded
 * (`--log-max-size`): read by its background supervisor into a BoundedLog
 * (log-size.ts). Loaded only by such a supervisor.
 */
import { closeSync } from 'node:fs';
import { Socket } from 'node:net';
import { SYS } from '../checkpoint/syscalls.js';
import { sys, sysOk } from '../native/fdio.js';
import { BoundedLog, LogWriteError } from './log-size.js';

/** The pipe's capacity asked for: a fast writer waits less often on the supervisor. */
const PIPE_BYTES = 1 << 20;
const O_CLOEXEC = 0o2000000;
const F_SETPIPE_SZ = 1031;

/**
 * The pipe a detached jail's output goes into (`writeFd`, for its fds 1
 * and 2), read into a BoundedLog. A checkpoint saves it as the jail's
 * standard output (parts/fds/stdio.ts, `outputPipes`), and a restored
 * jail writes into its new supervisor's pipe. If the supervisor dies, its
 * jail is killed with it (vjail-init), and what the supervisor read is in
 * the log already.
 */
export class LogPipe {
  readonly writeFd: number;
  private readonly reader: Socket;
  private readonly eof: Promise<void>;
  private warned = false;
  /** Output read but not yet written (the log could not take it), and why. */
  private pending: { bytes: number; why: string } | null = null;

  private constructor(readFd: number, writeFd: number, private readonly log: BoundedLog) {
    this.writeFd = writeFd;
    this.reader = new Socket({ fd: readFd, readable: true, writable: false });
    this.eof = new Promise((resolve) => {
      this.reader.on('end', resolve);
      this.reader.on('close', resolve);
      this.reader.on('error', () => resolve());
    });
    this.reader.on('data', (chunk: Buffer) => this.take(chunk));
  }

  /** A new pipe whose output goes to the log on `fd` (named `path`), kept within `maxBytes`. */
  static open(fd: number, path: string, maxBytes: number): LogPipe {
    const ends = Buffer.alloc(8);
    sysOk("making the jail's log pipe (pipe2)", SYS.pipe2, ends, O_CLOEXEC);
    const read = ends.readInt32LE(0);
    const write = ends.readInt32LE(4);
    // Larger where the host allows it (fs.pipe-max-size); the bound does not depend on it.
    sys(SYS.fcntl, write, F_SETPIPE_SZ, PIPE_BYTES);
    return new LogPipe(read, write, new BoundedLog(fd, path, maxBytes));
  }

  /** Append a chunk; where the log cannot be written, stop reading (the jail waits) and try again in a second. */
  private take(chunk: Buffer): void {
    try {
      this.log.append(chunk);
      this.pending = null;
    } catch (e) {
      if (!(e instanceof LogWriteError)) throw e;
      this.pending = { bytes: chunk.length - e.written, why: e.message };
      this.reader.pause();
      if (!this.warned) process.stderr.write(`vjail: warning: ${e.message}; the jail's output waits until it can\n`);
      this.warned = true;
      const rest = chunk.subarray(e.written);
      setTimeout(() => {
        this.reader.resume();
        this.take(rest);
      }, 1000).unref();
    }
  }

  /** Close our copy of the write end, once the jail holds its own. */
  closeWriteEnd(): void {
    closeSync(this.writeFd);
  }

  /**
   * Wait until everything the jail wrote is in the log (the pipe's end:
   * the jail's processes are gone), at most `ms`.
   */
  async drained(ms = 5000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), ms)));
    const timedOut = await Promise.race([this.eof.then(() => false), late]);
    clearTimeout(timer);
    if (timedOut) {
      // Say which it is: the log refusing what was read (and at least that much lost), or the pipe held open outside.
      if (this.pending) {
        process.stderr.write(`vjail: warning: ${this.pending.why} still ${ms / 1000} s after the jail ended; at least ${this.pending.bytes} bytes of its output, and whatever it left in the pipe, are not in the log\n`);
      } else {
        process.stderr.write(`vjail: warning: the jail's log pipe was still open ${ms / 1000} s after the jail ended (a process outside the jail holds it); what is written to it from now on is not logged\n`);
      }
      this.reader.destroy();
    }
  }
}
