import { errnoOf, runInCaller } from '../src/supervisor/incaller.js';
import { readFileSync, readlinkSync } from 'node:fs';
import { atTarget, closeAtTarget, hostInodeFlags, writeStopped } from './host-calls.js';
import type { Shim, ShimResult } from './types.js';
import { EFAULT, EINVAL, ENOSYS } from '../src/errno.js';

const AT_SYMLINK_NOFOLLOW = 0x100n;
const AT_NO_AUTOMOUNT = 0x800n;
const AT_EMPTY_PATH = 0x1000n;
const AT_STATX_SYNC_TYPE = 0x6000n;
const STATX__RESERVED = 0x80000000n;
const STATX_BASIC_STATS = 0x7ff;
/** sizeof(struct stat) and sizeof(struct statx) on x86_64. */
const STAT_SIZE = 144;
const STATX_SIZE = 256;

const STATX_MNT_ID = 0x1000;
const STATX_MNT_ID_UNIQUE = 0x4000n;
/** FS_IOC_GETFLAGS bits and the STATX_ATTR_* bits they become (the kernel uses the same values for the first four). */
const FLAG_ATTRS: [flag: number, attr: bigint][] = [
  [0x4, 0x4n], // FS_COMPR_FL: STATX_ATTR_COMPRESSED
  [0x10, 0x10n], // FS_IMMUTABLE_FL: STATX_ATTR_IMMUTABLE
  [0x20, 0x20n], // FS_APPEND_FL: STATX_ATTR_APPEND
  [0x40, 0x40n], // FS_NODUMP_FL: STATX_ATTR_NODUMP
  [0x800, 0x800n], // FS_ENCRYPT_FL: STATX_ATTR_ENCRYPTED
  [0x100000, 0x100000n], // FS_VERITY_FL: STATX_ATTR_VERITY
  [0x2000000, 0x200000n], // FS_DAX_FL: STATX_ATTR_DAX
];
/** What every file system's statx knows of: STATX_ATTR_AUTOMOUNT, MOUNT_ROOT and DAX (set by the VFS). */
const VFS_ATTRS_MASK = 0x1000n | 0x2000n | 0x200000n;
/** What a file system with inode flags knows of: APPEND, IMMUTABLE, NODUMP. */
const FLAGS_ATTRS_MASK = 0x20n | 0x10n | 0x40n;
const STATX_ATTR_MOUNT_ROOT = 0x2000n;

/** "\040" and friends in /proc/PID/mountinfo paths. */
const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/**
 * What statx adds to struct stat for the object open as `fdLink`
 * (/proc/PID/fd/N of the caller): its mount id and whether it is that
 * mount's root (fdinfo and mountinfo of the caller), and the attributes its
 * inode flags give (FS_IOC_GETFLAGS; regular files and directories only,
 * as opening anything else can have effects).
 */
function extras(pid: number, fd: bigint, mode: number): { mntId?: bigint; attributes: bigint; attributesMask: bigint } {
  let attributes = 0n;
  let attributesMask = VFS_ATTRS_MASK;
  let mntId: bigint | undefined;
  const link = `/proc/${pid}/fd/${fd}`;
  try {
    const m = /^mnt_id:\s*(\d+)$/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'latin1'));
    if (m) {
      mntId = BigInt(m[1]);
      const mount = readFileSync(`/proc/${pid}/mountinfo`, 'latin1')
        .split('\n')
        .map((l) => l.split(' '))
        .find((f) => f[0] === m[1]);
      if (mount && unescape(mount[4]) === readlinkSync(link)) attributes |= STATX_ATTR_MOUNT_ROOT;
    }
  } catch {
    // the caller's /proc entries went away with it: the call's answer no longer matters
  }
  const type = mode & 0o170000;
  if (type === 0o100000 || type === 0o040000) {
    const flags = hostInodeFlags(link);
    if (flags >= 0) {
      attributesMask |= FLAGS_ATTRS_MASK;
      for (const [flag, attr] of FLAG_ATTRS) {
        if (flags & flag) {
          attributes |= attr;
          attributesMask |= attr;
        }
      }
    }
  }
  return { mntId, attributes, attributesMask };
}

/** major and minor of a dev_t as the kernel encodes it in struct stat (new_encode_dev). */
function devParts(dev: bigint): [number, number] {
  const d = Number(dev & 0xffffffffn);
  return [(d >>> 8) & 0xfff, (d & 0xff) | ((d >>> 12) & 0xfff00)];
}

/** struct statx from an x86_64 struct stat: the basic fields, nothing else. */
function statxFrom(st: Buffer): Buffer {
  const x = Buffer.alloc(STATX_SIZE);
  x.writeUInt32LE(STATX_BASIC_STATS, 0);
  x.writeUInt32LE(Number(st.readBigInt64LE(56)), 4); // blksize
  x.writeUInt32LE(Number(st.readBigUInt64LE(16)), 16); // nlink
  x.writeUInt32LE(st.readUInt32LE(28), 20); // uid
  x.writeUInt32LE(st.readUInt32LE(32), 24); // gid
  x.writeUInt16LE(st.readUInt32LE(24) & 0xffff, 28); // mode
  x.writeBigUInt64LE(st.readBigUInt64LE(8), 32); // ino
  x.writeBigInt64LE(st.readBigInt64LE(48), 40); // size
  x.writeBigInt64LE(st.readBigInt64LE(64), 48); // blocks
  // atime, ctime, mtime (btime stays zero: struct stat has none).
  for (const [from, to] of [[72, 64], [104, 96], [88, 112]]) {
    x.writeBigInt64LE(st.readBigInt64LE(from), to);
    x.writeUInt32LE(Number(st.readBigUInt64LE(from + 8) & 0xffffffffn), to + 8);
  }
  const [rmaj, rmin] = devParts(st.readBigUInt64LE(40));
  const [dmaj, dmin] = devParts(st.readBigUInt64LE(0));
  x.writeUInt32LE(rmaj, 128);
  x.writeUInt32LE(rmin, 132);
  x.writeUInt32LE(dmaj, 136);
  x.writeUInt32LE(dmin, 140);
  return x;
}

export const statxShim: Shim = {
  name: 'statx',
  syscalls: ['statx'],
  doc:
    "statx (Linux 4.11) runs newfstatat(2) in the caller's own context (see IN-CALLER.md), so the " +
    "path resolves against the caller's cwd, root and dirfd with its credentials, and builds struct " +
    'statx from the struct stat it gets. Checks are made in the kernel\'s order: a mask with ' +
    'STATX__RESERVED, both AT_STATX_FORCE_SYNC and AT_STATX_DONT_SYNC, or flags other than ' +
    'AT_SYMLINK_NOFOLLOW, AT_NO_AUTOMOUNT, AT_EMPTY_PATH and the sync flags are EINVAL; then the ' +
    "lookup's own errors (EFAULT, ENOENT, EBADF, ENOTDIR, ELOOP, EACCES...); then EFAULT for a buffer " +
    'that cannot be written. AT_EMPTY_PATH with an empty or NULL path gives dirfd itself (the cwd ' +
    'for AT_FDCWD), as Linux 6.11 and later do. The sync flags are accepted and have no effect (as on ' +
    'local file systems). Filled: the STATX_BASIC_STATS fields (type, mode, nlink, uid, gid, atime, ' +
    'mtime, ctime, ino, size, blocks) with nanoseconds, blksize, and the device numbers; the mount id ' +
    '(STATX_MNT_ID, from /proc/PID/fdinfo of an O_PATH fd of the object opened in the caller; not when ' +
    'STATX_MNT_ID_UNIQUE is asked for, which only statx can give); STATX_ATTR_MOUNT_ROOT (the object is the ' +
    'root of that mount in /proc/PID/mountinfo); STATX_ATTR_APPEND, IMMUTABLE, NODUMP, COMPRESSED, ' +
    'ENCRYPTED, VERITY and DAX from the inode flags (FS_IOC_GETFLAGS, read by the supervisor for regular ' +
    'files and directories, whose open has no effects). attributes_mask says what is known: AUTOMOUNT, ' +
    'MOUNT_ROOT and DAX always (the VFS knows them for every file system), APPEND, IMMUTABLE and NODUMP ' +
    'where the file system has inode flags, COMPRESSED, ENCRYPTED and VERITY only when set (the kernel ' +
    'lists them for file systems that support them even when clear). stx_mask is STATX_BASIC_STATS and ' +
    'STATX_MNT_ID whatever was requested; btime, the direct-I/O alignment, the unique mount id, subvolume ' +
    'and atomic-write fields are zero and absent from the mask (no interface but statx gives them), and ' +
    'STATX_ATTR_AUTOMOUNT is never set. newfstatat never ' +
    'triggers an automount, so AT_NO_AUTOMOUNT is in effect always. A buffer in a read-only mapping ' +
    'is written anyway (the supervisor writes through /proc/PID/mem when process_vm_writev cannot). ' +
    'x86_64 callers only: an i386 caller gets ENOSYS, as from a kernel before 4.11.',
  handle(n, ctx): ShimResult | Promise<ShimResult> {
    if (n.arch !== 'x86_64') return { kind: 'errno', errno: ENOSYS };
    const [dfd, path, rawFlags, rawMask, buf] = n.args;
    const flags = rawFlags & 0xffffffffn;
    const mask = rawMask & 0xffffffffn;
    if (mask & STATX__RESERVED) return { kind: 'errno', errno: EINVAL };
    if ((flags & AT_STATX_SYNC_TYPE) === AT_STATX_SYNC_TYPE) return { kind: 'errno', errno: EINVAL };
    if (flags & ~(AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_EMPTY_PATH | AT_STATX_SYNC_TYPE)) return { kind: 'errno', errno: EINVAL };
    const atFlags = flags & (AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH);
    return runInCaller(n, ctx, async (s) => {
      // A NULL path with AT_EMPTY_PATH means "" since 6.11; older kernels' newfstatat want the string.
      const p = path === 0n && flags & AT_EMPTY_PATH ? s.push(Buffer.from([0])) : path;
      const st = s.push(Buffer.alloc(STAT_SIZE));
      const r = await s.syscall('newfstatat', [dfd, p, st, atFlags]);
      if (errnoOf(r)) return { kind: 'return', value: r };
      const x = statxFrom(s.read(st, STAT_SIZE));
      // The object once more, as an O_PATH fd in the caller, for what struct stat lacks.
      const empty = (flags & AT_EMPTY_PATH) !== 0n && s.read(p, 1)[0] === 0;
      const target = await atTarget(s, dfd, p, empty, (flags & AT_SYMLINK_NOFOLLOW) !== 0n);
      if (typeof target !== 'bigint') {
        const more = extras(n.pid, target.fd, x.readUInt16LE(28));
        await closeAtTarget(s, target);
        x.writeBigUInt64LE(more.attributes, 8);
        x.writeBigUInt64LE(more.attributesMask, 56);
        if (more.mntId !== undefined && !(mask & STATX_MNT_ID_UNIQUE)) {
          x.writeUInt32LE(x.readUInt32LE(0) | STATX_MNT_ID, 0);
          x.writeBigUInt64LE(more.mntId, 144);
        }
      }
      const ok = writeStopped(n.pid, buf, x);
      return { kind: 'return', value: ok ? 0n : -BigInt(EFAULT) };
    });
  },
};
