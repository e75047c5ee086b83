import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { vjailBin } from './fixtures.js';

/** Run the vjail CLI to completion; never rejects (tests look at exitCode). */
export async function vjail(args: string[], opts: { input?: string; timeoutMs?: number } = {}) {
  return execa('node', [vjailBin, ...args], {
    reject: false,
    input: opts.input ?? '',
    timeout: opts.timeoutMs ?? 60_000,
  });
}

/** What a started vjail CLI ends with: its exit code and what it wrote. */
export interface StartedResult {
  exitCode?: number;
  signal?: string;
  stdout: string;
  stderr: string;
}

/** A started vjail CLI: awaiting it gives its result. */
export type Started = Promise<StartedResult> & { pid: number | undefined; kill: (signal?: NodeJS.Signals | number) => boolean };

/**
 * Start the vjail CLI and hand back the running process. Its standard
 * output and error go to files (read back when it ends) and its input is
 * /dev/null, as for a program started from a terminal with its output
 * redirected: a jail whose streams were pipes or sockets to this test
 * runner would hold state outside the jail, which a checkpoint refuses.
 * With `streams`, they are pipes to this process instead.
 */
export function vjailStart(args: string[]): Started;
export function vjailStart(args: string[], opts: { streams: true }): ResultPromise<{ reject: false; buffer: true }>;
export function vjailStart(args: string[], opts: { streams?: boolean } = {}): Started | ResultPromise<{ reject: false; buffer: true }> {
  if (opts.streams) return execa('node', [vjailBin, ...args], { reject: false, buffer: true });
  const dir = mkdtempSync(join(tmpdir(), 'vjail-stdio-'));
  const out = join(dir, 'stdout');
  const err = join(dir, 'stderr');
  // Descriptors of files, not execa's { file } (which pipes through this process).
  const outFd = openSync(out, 'w');
  const errFd = openSync(err, 'w');
  const child = execa('node', [vjailBin, ...args], { reject: false, stdin: 'ignore', stdout: outFd, stderr: errFd });
  closeSync(outFd);
  closeSync(errFd);
  const read = (path: string): string => {
    try {
      return readFileSync(path, 'utf8').replace(/\n$/, '');
    } catch {
      return '';
    }
  };
  const done = child.then((r) => {
    const result = { exitCode: r.exitCode, signal: r.signal, stdout: read(out), stderr: read(err) };
    rmSync(dir, { recursive: true, force: true });
    return result;
  });
  return Object.assign(done, { pid: child.pid, kill: (signal?: NodeJS.Signals | number) => child.kill(signal) });
}

/** Is a process with this pid still alive (not a zombie)? */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Poll until `cond` holds or `ms` pass; returns whether it held. */
export async function waitFor(cond: () => boolean, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return cond();
}

/**
 * Our PID of the process running exactly this argv; with `nsPid`, the one
 * that has that PID inside its own PID namespace (a jail run with --pid-ns).
 */
export function pidOf(argv: string[], nsPid?: number): number | undefined {
  const want = `${argv.join('\0')}\0`;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8') !== want) continue;
      if (nsPid !== undefined && /^NSpid:.*\s(\d+)$/m.exec(readFileSync(`/proc/${d}/status`, 'utf8'))?.[1] !== String(nsPid)) continue;
      return Number(d);
    } catch {
      // gone
    }
  }
  return undefined;
}
