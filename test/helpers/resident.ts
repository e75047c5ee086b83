import { readdirSync, readFileSync } from 'node:fs';

/** Pids of resident supervisors whose socket is under dir. */
export function residents(dir: string): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      if (argv.some((a) => a.endsWith('resident/main.js')) && argv.some((a) => a.startsWith(dir))) pids.push(Number(e));
    } catch {
      // gone
    }
  }
  return pids;
}
