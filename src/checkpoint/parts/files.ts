/**
 * Open regular files and directories at descriptors above 2: saved by path,
 * open flags, offset and close-on-exec, and reopened at the same descriptor
 * inside the restored process. Only what can be found again by its path is
 * saved; anything else (pipes, sockets, devices, deleted files...) is named
 * in a warning and left out. 0-2 are those of `vjail restore`.
 */
import { readdirSync, readFileSync, readlinkSync, type BigIntStats, statfsSync, statSync } from 'node:fs';
import { ImageError, type LiveProcess, type OpenFile, type OpenedImage, fromHex, toHex } from '../../image/format.js';
import { native } from '../../native.js';
import { type Tracee, TraceeError } from '../tracee.js';
import { SYS } from '../syscalls.js';
import type { Scratch } from './memory.js';

const O_CREAT = 0o100;
const O_EXCL = 0o200;
const O_NOCTTY = 0o400;
const O_TRUNC = 0o1000;
const O_CLOEXEC = 0o2000000;
/** What only made sense when the file was first opened. */
const FIRST_OPEN_ONLY = O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC;
const AT_FDCWD = -100;
/**
 * proc, sysfs, cgroup v1 and v2: their files name kernel objects (often by
 * PID) rather than hold data, and would reopen as something else.
 */
const KERNEL_FILESYSTEMS = new Set([0x9fa0, 0x62656572, 0x27e0eb, 0x63677270]);
const SEEK_SET = 0;

/** A saved descriptor with the process that holds it (our PID), for the sharing check. */
export interface HeldFile {
  pid: number;
  file: OpenFile;
}

/** The fd's own file, unless it is gone or was never a path (sockets, pipes, anon inodes). */
function statOrNull(path: string): BigIntStats | null {
  try {
    return statSync(path, { bigint: true });
  } catch {
    return null;
  }
}

/** Why this descriptor cannot be saved, or its saved form. Called while the process is stopped. */
function describe(pid: number, fd: number): OpenFile | string {
  let path: string;
  try {
    path = readlinkSync(`/proc/${pid}/fd/${fd}`);
  } catch {
    return 'gone';
  }
  const own = statOrNull(`/proc/${pid}/fd/${fd}`);
  if (!own || !(own.isFile() || own.isDirectory())) return `${path} is not a regular file or directory`;
  if (KERNEL_FILESYSTEMS.has(Number(statfsSync(`/proc/${pid}/fd/${fd}`).type))) return `${path} is a file of the kernel's (proc, sysfs or cgroup), not data`;
  const byPath = path.startsWith('/') ? statOrNull(path) : null;
  if (!byPath || byPath.dev !== own.dev || byPath.ino !== own.ino) return `${path} is deleted or not reachable by its path`;
  const info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
  const pos = /^pos:\s+(\d+)$/m.exec(info);
  const flags = /^flags:\s+([0-7]+)$/m.exec(info);
  if (!pos || !flags) return `${path}: /proc/${pid}/fdinfo/${fd} is not as expected`;
  const all = parseInt(flags[1]!, 8);
  return { fd, path, kind: own.isDirectory() ? 'directory' : 'file', flags: all & ~O_CLOEXEC, pos: toHex(BigInt(pos[1]!)), cloexec: (all & O_CLOEXEC) !== 0 };
}

/** Every descriptor above 2 of a stopped process: the saved ones, and a warning for each of the rest. */
export function collectFiles(pid: number): { files: OpenFile[]; warnings: string[] } {
  const files: OpenFile[] = [];
  const warnings: string[] = [];
  const fds = readdirSync(`/proc/${pid}/fd`).map(Number).filter((fd) => fd > 2).sort((a, b) => a - b);
  for (const fd of fds) {
    const d = describe(pid, fd);
    if (typeof d !== 'string') files.push(d);
    else if (d !== 'gone') warnings.push(`file descriptor ${fd} of process ${pid} is not saved: ${d}; only regular files and directories are`);
  }
  return { files, warnings };
}

interface KcmpAddon {
  kcmpFile(pid1: number, fd1: number, pid2: number, fd2: number): boolean;
}

/**
 * Descriptors that share one open file description (inherited over fork, or
 * dup'ed) come back as separate descriptions, each with the saved offset:
 * one warning for each after the first holder. kcmp tells them apart from
 * two opens of the same file, which /proc cannot.
 */
export function sharedFileWarnings(held: HeldFile[]): string[] {
  const kcmp = native() as unknown as KcmpAddon;
  const byInode = new Map<string, HeldFile[]>();
  for (const h of held) {
    const st = statOrNull(`/proc/${h.pid}/fd/${h.file.fd}`);
    if (!st) continue;
    const key = `${st.dev}:${st.ino}`;
    byInode.set(key, [...(byInode.get(key) ?? []), h]);
  }
  const warnings: string[] = [];
  for (const group of byInode.values()) {
    group.forEach((h, i) => {
      const first = group.slice(0, i).find((o) => kcmp.kcmpFile(o.pid, o.file.fd, h.pid, h.file.fd));
      if (first) {
        warnings.push(`file descriptor ${h.file.fd} of process ${h.pid} (${h.file.path}) shares its open file description with descriptor ${first.file.fd} of process ${first.pid}; after restore each has its own, offsets no longer shared`);
      }
    });
  }
  return warnings;
}

/** Before anything is started: every saved file must still be there, and of the same kind. */
export function checkFiles(image: OpenedImage): void {
  for (const p of image.manifest.processes) {
    if (p.state !== 'live') continue;
    for (const f of p.files) {
      const st = statOrNull(f.path);
      if (!st) throw new ImageError(`${f.path} (file descriptor ${f.fd} of process ${p.pid}) is missing; it must exist to restore the image`);
      if (f.kind === 'file' ? !st.isFile() : !st.isDirectory()) {
        throw new ImageError(`${f.path} (file descriptor ${f.fd} of process ${p.pid}) is no longer a ${f.kind === 'file' ? 'regular file' : 'directory'}`);
      }
    }
  }
}

/** Reopen each saved file inside the process, at its descriptor, with its flags, offset and close-on-exec. */
export async function restoreFiles(t: Tracee, scratch: Scratch, p: Pick<LiveProcess, 'pid' | 'files'>): Promise<void> {
  for (const f of p.files) {
    const what = (step: string): string => `${step} of ${f.path} at file descriptor ${f.fd} (saved process ${p.pid})`;
    const path = Buffer.from(`${f.path}\0`);
    if (path.length > scratch.size) throw new TraceeError(`the path of file descriptor ${f.fd} of process ${p.pid} is too long`);
    t.write(scratch.addr, path);
    const cloexec = f.cloexec ? O_CLOEXEC : 0;
    const fd = await t.syscallOk(what('reopen'), SYS.openat, AT_FDCWD, scratch.addr, (f.flags & ~FIRST_OPEN_ONLY) | cloexec, 0);
    if (fd !== BigInt(f.fd)) {
      await t.syscallOk(what('dup3'), SYS.dup3, fd, f.fd, cloexec);
      await t.syscall(SYS.close, fd);
    }
    const pos = fromHex(f.pos);
    // An O_PATH descriptor cannot seek; its offset is always 0.
    if (pos !== 0n) {
      const r = await t.syscallOk(what('seek'), SYS.lseek, f.fd, pos, SEEK_SET);
      if (r !== pos) throw new TraceeError(`${what('seek')} went to ${r}, not ${pos}`);
    }
  }
}
