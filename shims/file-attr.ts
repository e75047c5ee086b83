import { errnoOf, runInCaller } from '../src/supervisor/incaller.js';
import { AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, atTarget, closeAtTarget, EFAULT, writeStopped } from './host-calls.js';
import type { Notification, Shim, ShimContext, ShimResult } from './types.js';
import { emptyPath, readExtensible } from './xattrat.js';
import { E2BIG, EBADF, EINVAL, ENOIOCTLCMD, ENOSYS, ENOTTY, EOPNOTSUPP, EROFS } from '../src/errno.js';

const F_GETFL = 3n;
const O_PATH = 0o10000000n;
const O_RDONLY = 0n;
const O_NONBLOCK = 0o4000n;
const O_NOCTTY = 0o400n;
const O_CLOEXEC = 0o2000000n;
/** FS_IOC_FSGETXATTR and FS_IOC_FSSETXATTR, on a 28-byte struct fsxattr. */
const FS_IOC_FSGETXATTR = 0x801c581fn;
const FS_IOC_FSSETXATTR = 0x401c5820n;
const FSXATTR_SIZE = 28;
/** sizeof(struct file_attr) in its first (and on 6.18 only) version. */
const FILE_ATTR_SIZE_VER0 = 24;
/** FS_XFLAGS_MASK: the xflags file_setattr accepts. */
const FS_XFLAGS_MASK = 0x8001effbn;
const STAT_SIZE = 144;
const STATFS_SIZE = 120;
const STATFS_FLAGS = 80;
const ST_RDONLY = 1n;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const PAGE_SIZE = 4096n;

const errno = (e: number): ShimResult => ({ kind: 'errno', errno: e });
const ret = (v: bigint) => ({ kind: 'return', value: v }) as const;

/** An ioctl result as file_getattr/file_setattr give it: no fileattr support is EOPNOTSUPP. */
function fromIoctl(r: bigint): bigint {
  const e = errnoOf(r);
  return e === ENOTTY || e === ENOIOCTLCMD ? -BigInt(EOPNOTSUPP) : r;
}

function handle(n: Notification, ctx: ShimContext): ShimResult | Promise<ShimResult> {
  if (n.arch !== 'x86_64') return errno(ENOSYS);
  const [dfd, path, ufattr, usize, rawAt] = n.args;
  const atFlags = rawAt & 0xffffffffn;
  const set = n.name === 'file_setattr';
  if (atFlags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH)) return errno(EINVAL);
  if (usize > PAGE_SIZE) return errno(E2BIG);
  if (usize < BigInt(FILE_ATTR_SIZE_VER0)) return errno(EINVAL);
  let fsx: Buffer | undefined;
  if (set) {
    const fa = readExtensible(ctx.caller, ufattr, usize, BigInt(FILE_ATTR_SIZE_VER0), FILE_ATTR_SIZE_VER0);
    if (typeof fa === 'number') return errno(fa);
    const xflags = fa.readBigUInt64LE(0);
    if (xflags & ~FS_XFLAGS_MASK) return errno(EINVAL);
    // struct fsxattr: xflags, extsize, nextents (ignored when setting), projid, cowextsize, padding.
    fsx = Buffer.alloc(FSXATTR_SIZE);
    fsx.writeUInt32LE(Number(xflags), 0);
    fsx.writeUInt32LE(fa.readUInt32LE(8), 4);
    fsx.writeUInt32LE(fa.readUInt32LE(16), 12);
    fsx.writeUInt32LE(fa.readUInt32LE(20), 16);
  }
  const empty = emptyPath(ctx.caller, path, atFlags);
  if (typeof empty === 'number') return errno(empty);
  const fd = BigInt.asIntN(32, dfd);
  return runInCaller(n, ctx, async (s) => {
    if (empty && fd >= 0n) {
      // The kernel takes dirfd's own path, and an O_PATH fd is no fd to it here.
      const fl = await s.syscall('fcntl', [dfd, F_GETFL]);
      if (errnoOf(fl) || fl & O_PATH) return ret(-BigInt(EBADF));
    }
    const t = await atTarget(s, dfd, path, empty, (atFlags & AT_SYMLINK_NOFOLLOW) !== 0n);
    if (typeof t === 'bigint') return ret(t);
    try {
      const st = s.push(Buffer.alloc(STAT_SIZE));
      const r = await s.syscall('fstat', [t.fd, st]);
      if (errnoOf(r)) return ret(r);
      const type = s.read(st, STAT_SIZE).readUInt32LE(24) & S_IFMT;
      if (type !== S_IFREG && type !== S_IFDIR) {
        // Symlinks, FIFOs, sockets and devices: no file system vjail knows has attributes for them.
        if (set) {
          const sf = s.push(Buffer.alloc(STATFS_SIZE));
          const f = await s.syscall('fstatfs', [t.fd, sf]);
          if (!errnoOf(f) && s.read(sf, STATFS_SIZE).readBigUInt64LE(STATFS_FLAGS) & ST_RDONLY) return ret(-BigInt(EROFS));
        }
        return ret(-BigInt(EOPNOTSUPP));
      }
      const file = await s.syscall('openat', [AT_FDCWD, t.path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC]);
      if (errnoOf(file)) return ret(file);
      try {
        if (set) return ret(fromIoctl(await s.syscall('ioctl', [file, FS_IOC_FSSETXATTR, s.push(fsx!)])));
        const buf = s.push(Buffer.alloc(FSXATTR_SIZE));
        const r = fromIoctl(await s.syscall('ioctl', [file, FS_IOC_FSGETXATTR, buf]));
        if (errnoOf(r)) return ret(r);
        const x = s.read(buf, FSXATTR_SIZE);
        // struct file_attr: u64 xflags, then extsize, nextents, projid, cowextsize; zeros past it up to usize.
        const out = Buffer.alloc(Number(usize));
        out.writeBigUInt64LE(BigInt(x.readUInt32LE(0)) & FS_XFLAGS_MASK, 0);
        for (let i = 1; i <= 4; i++) out.writeUInt32LE(x.readUInt32LE(i * 4), 4 + i * 4);
        return ret(writeStopped(n.pid, ufattr, out) ? 0n : -BigInt(EFAULT));
      } finally {
        await s.syscall('close', [file]);
      }
    } finally {
      await closeAtTarget(s, t);
    }
  });
}

export const fileAttrShim: Shim = {
  name: 'file_attr',
  syscalls: ['file_getattr', 'file_setattr'],
  doc:
    "file_getattr and file_setattr (Linux 6.17) run in the caller's own context (see IN-CALLER.md) with the " +
    'FS_IOC_FSGETXATTR and FS_IOC_FSSETXATTR ioctls. Checks in fs/file_attr.c\'s order: at_flags other than ' +
    'AT_SYMLINK_NOFOLLOW and AT_EMPTY_PATH are EINVAL, a usize over a page E2BIG, below 24 (FILE_ATTR_SIZE_VER0) ' +
    'EINVAL; for file_setattr an unreadable struct file_attr is EFAULT, non-zero bytes past it E2BIG, xflags outside ' +
    'FS_XFLAGS_MASK EINVAL; then a path whose first byte cannot be read with AT_EMPTY_PATH is EFAULT. AT_EMPTY_PATH ' +
    'with a NULL or empty path names dirfd itself (EBADF if it is not open or is O_PATH), the cwd for AT_FDCWD; ' +
    'otherwise the path is looked up relative to dirfd with an O_PATH open (O_NOFOLLOW for AT_SYMLINK_NOFOLLOW), so ' +
    'lookup errors are the kernel\'s. A regular file or directory is then opened read-only (non-blocking) through ' +
    '/proc/thread-self/fd/N and the ioctl made on it; ENOTTY (no fileattr support, as on procfs) becomes EOPNOTSUPP, as ' +
    'the syscalls answer. Symlinks, FIFOs, sockets and device nodes get EOPNOTSUPP without being opened (EROFS first ' +
    'for file_setattr on a read-only mount), which is what ext4 and tmpfs answer; a file system that keeps attributes ' +
    'on such inodes (XFS) would answer them natively. Differences: the caller must be able to open the file for ' +
    'reading (the kernel needs only the lookup), so an unreadable file gives EACCES; fa_nextents is not set by ' +
    'file_setattr (nor by the kernel). The result is written up to usize, zero-filled past 24 bytes, EFAULT if it ' +
    'cannot be. x86_64 callers only: an i386 caller gets ENOSYS, as from a kernel before 6.17.',
  handle,
};
