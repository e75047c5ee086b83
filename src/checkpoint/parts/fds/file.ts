/**
 * Files reopened by their path: regular files and directories, and O_PATH
 * descriptors of anything that has a path. The path is resolved as the
 * restored jail sees it (through /proc/PID/root of its first process), with
 * the description's open flags less those that only mattered at the first
 * open, and the offset set again.
 */
import { type BigIntStats, statfsSync, statSync } from 'node:fs';
import { ImageError, fromHex, toHex } from '../../../image/format.js';
import { sys, sysOk } from '../../../native/fdio.js';
import { SYS } from '../../syscalls.js';
import { type FdKind, O_CLOEXEC, O_PATH, Unsaveable } from './kind.js';

const O_CREAT = 0o100;
const O_EXCL = 0o200;
const O_NOCTTY = 0o400;
const O_TRUNC = 0o1000;
/** What only made sense when the file was first opened. */
const FIRST_OPEN_ONLY = O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC;
const AT_FDCWD = -100;
const SEEK_SET = 0;
/** proc, sysfs, cgroup v1 and v2: their files name kernel objects (often by PID), and would reopen as something else. */
const KERNEL_FILESYSTEMS = new Set([0x9fa0, 0x62656572, 0x27e0eb, 0x63677270]);

function statOrNull(path: string): BigIntStats | null {
  try {
    return statSync(path, { bigint: true });
  } catch {
    return null;
  }
}

export const fileKind: FdKind<'file'> = {
  kind: 'file',
  doc: { what: 'regular files, directories; O_PATH descriptors of anything with a path', how: 'reopened by path as the jail sees it, with the open flags and offset; a file deleted or replaced since is refused at restore in one line' },
  match: (p) => p.link.startsWith('/') && !!p.st && ((p.flags & O_PATH) !== 0 || p.st.isFile() || p.st.isDirectory()),
  collect(p) {
    const key = `${p.link}`;
    if (p.link.endsWith(' (deleted)')) return new Unsaveable(`${p.link}: a file deleted while open (its contents are not saved yet)`, key);
    if (KERNEL_FILESYSTEMS.has(Number(statfsSync(`/proc/${p.pid}/fd/${p.fd}`).type))) {
      return new Unsaveable(`${p.link} is a file of the kernel's (proc, sysfs or cgroup), not data`, key, true);
    }
    const byPath = statOrNull(`/proc/${p.pid}/root${p.link}`);
    if (!byPath || byPath.dev !== p.st!.dev || byPath.ino !== p.st!.ino) return new Unsaveable(`${p.link} is not reachable by its path any more`, key);
    const type = p.st!.isFile() ? 'file' : p.st!.isDirectory() ? 'directory' : 'other';
    return { path: p.link, type, pos: toHex(p.pos) };
  },
  check(d, where, _image, _inherit, root) {
    const st = statOrNull(`${root}${d.path}`);
    if (!st) throw new ImageError(`${d.path} (${where}) is missing; it must exist to restore the image`);
    const same = d.type === 'file' ? st.isFile() : d.type === 'directory' ? st.isDirectory() : true;
    if (!same) throw new ImageError(`${d.path} (${where}) is no longer a ${d.type === 'file' ? 'regular file' : 'directory'}`);
  },
  create(d, ctx) {
    const path = Buffer.from(`/proc/${ctx.rootPid}/root${d.path}\0`);
    const fd = sysOk(`reopening ${d.path}`, SYS.openat, AT_FDCWD, path, (d.flags & ~FIRST_OPEN_ONLY) | O_CLOEXEC, 0);
    const pos = fromHex(d.pos);
    // An O_PATH descriptor cannot seek; its offset is always 0.
    if (pos !== 0n) {
      const r = sys(SYS.lseek, fd, pos, SEEK_SET);
      if (r !== pos) throw new ImageError(`cannot seek ${d.path} to offset ${pos} (got ${r})`);
    }
    return { fd };
  },
};
