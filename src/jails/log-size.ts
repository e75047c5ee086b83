/**
 * A bounded log for a detached jail (`--log-max-size`). The jail writes its
 * output straight into the log file (a regular file, so a checkpoint holds
 * no pipe to the supervisor), opened for appending. The background
 * supervisor looks at it every LOG_CHECK_MS; past the bound, it copies the
 * live part to `log.1` (replacing the previous one) and frees that part of
 * the log in place (a hole punched from 0: the size stays, appends go on at
 * the end untouched, so nothing written meanwhile is lost). `log.start` says
 * where the live part begins. At most the bound twice over is stored, plus
 * what the jail writes between two looks.
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync, renameSync, writeSync } from 'node:fs';
import { UsageError } from '../cli/errors.js';
import { native } from '../native.js';
import { writeAtomic } from './state.js';

/** How often the size is looked at. */
export const LOG_CHECK_MS = 50;
/** Below this a bound would rotate on every look. */
const MIN_BYTES = 4096;

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

/** Where the live part of log `path` begins (0 when it was never rotated). */
export function liveStart(path: string): number {
  try {
    const n = Number(readFileSync(startPath(path), 'utf8'));
    return Number.isSafeInteger(n) && n > 0 ? n : 0;
  } catch {
    return 0;
  }
}

/** Copy bytes [from, to) of `path` into a new `dest`, replacing it in one step. */
function copyRange(path: string, from: number, to: number, dest: string): void {
  const src = openSync(path, 'r');
  const tmp = `${dest}.tmp`;
  const out = openSync(tmp, 'w', 0o644);
  try {
    const buf = Buffer.alloc(1 << 20);
    for (let at = from; at < to; ) {
      const n = readSync(src, buf, 0, Math.min(buf.length, to - at), at);
      if (n === 0) break;
      writeSync(out, buf, 0, n);
      at += n;
    }
  } finally {
    closeSync(src);
    closeSync(out);
  }
  renameSync(tmp, dest);
}

/**
 * Keep the log open on descriptor `fd` (named `path`) within `maxBytes`
 * until the returned stop function is called. The timer does not hold the
 * process open.
 */
export function boundLog(fd: number, path: string, maxBytes: number): () => void {
  let start = liveStart(path);
  const look = (): void => {
    try {
      const size = fstatSync(fd).size;
      if (size - start <= maxBytes) return;
      copyRange(path, start, size, rotatedPath(path));
      native().punchHole(fd, 0, size);
      start = size;
      writeAtomic(startPath(path), String(start));
    } catch (e) {
      clearInterval(timer);
      // Gone with the jail's directory (vjail rm): nothing to say. Else the log says why it is no longer bounded.
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') process.stderr.write(`vjail: warning: --log-max-size: the log cannot be bounded here (${code ?? String(e)}); it grows on\n`);
    }
  };
  const timer = setInterval(look, LOG_CHECK_MS);
  timer.unref();
  return () => clearInterval(timer);
}
