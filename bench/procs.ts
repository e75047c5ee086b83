/** Small process helpers the benchmark groups share. */
import { readdirSync, readFileSync } from 'node:fs';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Our PID of the process running exactly this argv. */
export function pidOf(argv: string[]): number | undefined {
  const want = `${argv.join('\0')}\0`;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8') === want) return Number(d);
    } catch {
      // gone
    }
  }
  return undefined;
}

/** SIGKILL a process that may be gone already. */
export function killQuietly(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
}
