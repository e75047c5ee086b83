import { readdirSync, readFileSync } from 'node:fs';
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

/** Start the vjail CLI and hand back the running process. */
export function vjailStart(args: string[]): ResultPromise<{ reject: false; buffer: true }> {
  return execa('node', [vjailBin, ...args], { reject: false, buffer: true });
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
