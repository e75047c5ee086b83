import { errnoOf, runInCaller } from '../src/supervisor/incaller.js';
import type { Shim, ShimResult } from './types.js';
import { EINVAL, EISDIR, ENOSYS, ENOTDIR } from '../src/errno.js';

const RENAME_NOREPLACE = 1n;
const RENAME_EXCHANGE = 2n;
const RENAME_WHITEOUT = 4n;
const AT_SYMLINK_NOFOLLOW = 0x100n;
const AT_REMOVEDIR = 0x200n;
const O_CREAT = 0o100n;
const O_EXCL = 0o200n;
const O_WRONLY = 1n;
const O_CLOEXEC = 0o2000000n;
const STAT_SIZE = 144;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;

export const renameat2Shim: Shim = {
  name: 'renameat2',
  syscalls: ['renameat2'],
  doc:
    "renameat2 (Linux 3.15) runs in the caller's own context (see IN-CALLER.md). Flags other than " +
    'RENAME_NOREPLACE, RENAME_EXCHANGE and RENAME_WHITEOUT, or RENAME_EXCHANGE with either of the ' +
    'others, are EINVAL, as in the kernel. Without flags it is renameat(2). RENAME_NOREPLACE first ' +
    'looks at oldpath (fstatat with AT_SYMLINK_NOFOLLOW: its errors are returned, ENOENT for a missing ' +
    'source), then claims newpath by creating an empty placeholder of the same kind there (mkdirat ' +
    'for a directory, openat with O_CREAT|O_EXCL otherwise, ENOTDIR for a new name with a trailing slash; EEXIST if anything is there, which is the ' +
    'no-replace check, made atomically by the file system), and renames oldpath over it; if that ' +
    'rename fails the placeholder is removed and the rename\'s error returned. Unlike the kernel, ' +
    'the empty placeholder is visible at newpath for the moment between the two steps, the parent ' +
    "directory's timestamps change twice, and several errors at once may be reported in another " +
    'order. RENAME_EXCHANGE and RENAME_WHITEOUT cannot be built from older calls and are EINVAL, ' +
    'which is what a kernel whose file system lacks them answers. x86_64 callers only: an i386 ' +
    'caller gets ENOSYS, as from a kernel before 3.15.',
  handle(n, ctx): ShimResult | Promise<ShimResult> {
    if (n.arch !== 'x86_64') return { kind: 'errno', errno: ENOSYS };
    const [olddfd, oldpath, newdfd, newpath, rawFlags] = n.args;
    const flags = rawFlags & 0xffffffffn;
    if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT)) return { kind: 'errno', errno: EINVAL };
    if (flags & (RENAME_NOREPLACE | RENAME_WHITEOUT) && flags & RENAME_EXCHANGE) return { kind: 'errno', errno: EINVAL };
    if (flags & (RENAME_EXCHANGE | RENAME_WHITEOUT)) return { kind: 'errno', errno: EINVAL };
    return runInCaller(n, ctx, async (s) => {
      if (flags === 0n) return { kind: 'return', value: await s.syscall('renameat', [olddfd, oldpath, newdfd, newpath]) };
      const st = s.push(Buffer.alloc(STAT_SIZE));
      const r = await s.syscall('newfstatat', [olddfd, oldpath, st, AT_SYMLINK_NOFOLLOW]);
      if (errnoOf(r)) return { kind: 'return', value: r };
      const isDir = (s.read(st, STAT_SIZE).readUInt32LE(24) & S_IFMT) === S_IFDIR;
      if (isDir) {
        const m = await s.syscall('mkdirat', [newdfd, newpath, 0o700n]);
        if (errnoOf(m)) return { kind: 'return', value: m };
      } else {
        const fd = await s.syscall('openat', [newdfd, newpath, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600n]);
        // EISDIR here means a trailing slash on a new name, which rename refuses for a non-directory with ENOTDIR.
        if (errnoOf(fd) === EISDIR) return { kind: 'return', value: -BigInt(ENOTDIR) };
        if (errnoOf(fd)) return { kind: 'return', value: fd };
        await s.syscall('close', [fd]);
      }
      const mv = await s.syscall('renameat', [olddfd, oldpath, newdfd, newpath]);
      if (errnoOf(mv)) await s.syscall('unlinkat', [newdfd, newpath, isDir ? AT_REMOVEDIR : 0n]);
      return { kind: 'return', value: mv };
    });
  },
};
