/**
 * Reading a stopped process's descriptors from /proc, and finding who
 * outside the jail holds a pipe or socket that a jailed process holds too.
 */
import { readFileSync } from 'node:fs';
import { outsideLinks, probeFds, type ProbedFd } from '../../../native/fdio.js';
import type { FdProbe, FdStat } from './kind.js';

const S_IFMT = 0o170000n;

/** stat's fields as the native probe gives them (8 u64), with fs.Stats' type tests. */
class ProbedStat implements FdStat {
  readonly dev: bigint;
  readonly ino: bigint;
  readonly mode: bigint;
  readonly nlink: bigint;
  readonly uid: bigint;
  readonly gid: bigint;
  readonly rdev: bigint;
  readonly size: bigint;
  constructor(raw: Buffer) {
    const f = (i: number): bigint => raw.readBigUInt64LE(i * 8);
    [this.dev, this.ino, this.mode, this.nlink, this.uid, this.gid, this.rdev, this.size] = [f(0), f(1), f(2), f(3), f(4), f(5), f(6), f(7)];
  }
  private is(type: bigint): boolean {
    return (this.mode & S_IFMT) === type;
  }
  isFile(): boolean {
    return this.is(0o100000n);
  }
  isDirectory(): boolean {
    return this.is(0o040000n);
  }
  isFIFO(): boolean {
    return this.is(0o010000n);
  }
  isSocket(): boolean {
    return this.is(0o140000n);
  }
  isCharacterDevice(): boolean {
    return this.is(0o020000n);
  }
  isBlockDevice(): boolean {
    return this.is(0o060000n);
  }
  isSymbolicLink(): boolean {
    return this.is(0o120000n);
  }
}

function probeOf(pid: number, [fd, link, info, st]: ProbedFd): FdProbe {
  const flags = /^flags:\s+([0-7]+)$/m.exec(info);
  const pos = /^pos:\s+(\d+)$/m.exec(info);
  return { pid, fd, link, st: st ? new ProbedStat(st) : null, info, flags: flags ? parseInt(flags[1]!, 8) : 0, pos: pos ? BigInt(pos[1]!) : 0n };
}

/**
 * One descriptor of a process outside the jail's tree (vjail-init's standard
 * streams), or null if it is not open, the process is gone, or its
 * descriptors are not ours to read (vjail-init of a jail in a user namespace).
 */
export function probeFd(pid: number, fd: number): FdProbe | null {
  let found: ProbedFd[];
  try {
    found = probeFds(pid, fd);
  } catch (e) {
    if (['ENOENT', 'EACCES', 'EPERM'].includes((e as NodeJS.ErrnoException).code ?? '')) return null;
    throw e;
  }
  return found.length ? probeOf(pid, found[0]!) : null;
}

/** Every descriptor of a stopped process, by number. */
export function probeProcess(pid: number): FdProbe[] {
  return probeFds(pid).map((p) => probeOf(pid, p));
}

function commOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}

/**
 * Processes outside the jail holding pipes or sockets (and the FIFOs
 * `paths` names), by link: one scan of /proc (native: thousands of
 * descriptors on a busy host), made only when needed. `exclude`: the jail's
 * own processes and ourselves. vjail-init is not excluded: the jail's
 * standard streams are its, and lead outside.
 */
export function outsideHolders(exclude: Set<number>, paths: string[] = []): Map<string, number[]> {
  const out = new Map<string, number[]>();
  const flat = outsideLinks(Int32Array.from(exclude), paths);
  for (let i = 0; i < flat.length; i += 2) {
    const pid = flat[i] as number;
    const link = flat[i + 1] as string;
    const holders = out.get(link);
    if (!holders) out.set(link, [pid]);
    else if (!holders.includes(pid)) holders.push(pid);
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
