import { errnoOf, runInCaller } from '../src/supervisor/incaller.js';
import { writeStopped } from './host-calls.js';
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
    'mtime, ctime, ino, size, blocks) with nanoseconds, blksize, and the device numbers; stx_mask is ' +
    'always STATX_BASIC_STATS, whatever was requested, and btime, mnt_id, attributes, ' +
    'attributes_mask, the direct-I/O alignment and atomic-write fields are zero. newfstatat never ' +
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
      const ok = writeStopped(n.pid, buf, statxFrom(s.read(st, STAT_SIZE)));
      return { kind: 'return', value: ok ? 0n : -BigInt(EFAULT) };
    });
  },
};
