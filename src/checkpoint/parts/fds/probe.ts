/**
 * Reading a stopped process's descriptors from /proc, and finding who
 * outside the jail holds a pipe or socket that a jailed process holds too.
 */
import { type BigIntStats, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import type { FdProbe } from './kind.js';

function statOrNull(path: string): BigIntStats | null {
  try {
    return statSync(path, { bigint: true });
  } catch {
    return null;
  }
}

/** One descriptor, or null if it was closed meanwhile (a process cannot close while stopped; a zombie's are gone). */
export function probeFd(pid: number, fd: number): FdProbe | null {
  let link: string;
  let info: string;
  try {
    link = readlinkSync(`/proc/${pid}/fd/${fd}`);
    info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
  } catch {
    return null;
  }
  const flags = /^flags:\s+([0-7]+)$/m.exec(info);
  const pos = /^pos:\s+(\d+)$/m.exec(info);
  return { pid, fd, link, st: statOrNull(`/proc/${pid}/fd/${fd}`), info, flags: flags ? parseInt(flags[1]!, 8) : 0, pos: pos ? BigInt(pos[1]!) : 0n };
}

/** Every descriptor of a stopped process, by number. */
export function probeProcess(pid: number): FdProbe[] {
  return readdirSync(`/proc/${pid}/fd`)
    .map(Number)
    .sort((a, b) => a - b)
    .map((fd) => probeFd(pid, fd))
    .filter((p): p is FdProbe => p !== null);
}

/** The inode of a `pipe:[N]` or `socket:[N]` link, as its kind and number. */
export const inodeLink = /^(pipe|socket):\[(\d+)\]$/;

function commOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}

/**
 * Processes outside the jail holding pipes or sockets (and the paths
 * `pathWanted` asks for: FIFOs), by link: one scan of /proc, made only when needed. `exclude`: the jail's own
 * processes and ourselves. vjail-init is not excluded: the jail's standard
 * streams are its, and lead outside.
 */
export function outsideHolders(exclude: Set<number>, pathWanted: (link: string) => boolean = () => false): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || exclude.has(Number(d))) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${d}/fd`);
    } catch {
      continue; // gone, or not ours to read
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = readlinkSync(`/proc/${d}/fd/${fd}`);
      } catch {
        continue;
      }
      if (!inodeLink.test(link) && !(link.startsWith('/') && pathWanted(link))) continue;
      const holders = out.get(link) ?? [];
      if (!holders.includes(Number(d))) holders.push(Number(d));
      out.set(link, holders);
    }
  }
  return out;
}

/** "process 123 (tee)", naming the holders other than vjail-init first: they are what the link leads to. */
export function describeHolders(pids: number[]): string {
  const named = pids.map((p) => ({ pid: p, comm: commOf(p) }));
  named.sort((a, b) => Number(a.comm === 'vjail-init') - Number(b.comm === 'vjail-init'));
  const first = named[0]!;
  return `process ${first.pid} (${first.comm})${named.length > 1 ? ` and ${named.length - 1} other(s)` : ''}`;
}
