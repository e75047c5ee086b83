import { readFileSync } from 'node:fs';

/**
 * The parent of process `pid`, as /proc/PID/stat gives it, or null once the
 * process has ended (or is not ours to read). The comm field may hold any
 * character, spaces and parentheses included: the fields are read after its
 * last ')'.
 */
export function parentPid(pid: number): number | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  return Number.isInteger(ppid) ? ppid : null;
}
