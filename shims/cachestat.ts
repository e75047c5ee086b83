import { errnoOf, runInCaller, type InCallerSession } from '../src/supervisor/incaller.js';
import { creds } from './faccessat2.js';
import { AT_FDCWD, EFAULT, writeStopped } from './host-calls.js';
import type { Shim, ShimResult } from './types.js';
import { EBADF, EINVAL, ENOSYS, EOPNOTSUPP, EPERM } from '../src/errno.js';

const F_GETFL = 3n;
const O_ACCMODE = 3n;
const O_RDONLY = 0n;
const O_RDWR = 2n;
const O_PATH = 0o10000000n;
const O_CLOEXEC = 0o2000000n;
const W_OK = 2n;
const CAP_FOWNER = 3n;
const HUGETLBFS_MAGIC = 0x958458f6n;
const STAT_SIZE = 144;
const STATFS_SIZE = 120;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFBLK = 0o060000;
/** BLKGETSIZE64: a block device's size in bytes. */
const BLKGETSIZE64 = 0x80081272n;
const PAGE_SHIFT = 12n;
const PAGE = 1n << PAGE_SHIFT;
/** Pages mapped and looked at per mincore call (64 MiB of file). */
const WINDOW = 16384n;
const PROT_READ = 1n;
const PROT_RW = 3n;
const MAP_SHARED = 1n;
const MAP_PRIVATE_ANON = 0x22n;
const U64 = (1n << 64n) - 1n;
/** sizeof(struct cachestat): five u64 counters. */
const CACHESTAT_SIZE = 40;

const fail = (e: number) => ({ kind: 'return', value: -BigInt(e) }) as const;

export const cachestatShim: Shim = {
  name: 'cachestat',
  syscalls: ['cachestat'],
  doc:
    "cachestat (Linux 6.5) runs in the caller's own context (see IN-CALLER.md). Checks follow the " +
    "kernel's order: EBADF for an fd that is not open (or is O_PATH), EFAULT for a range that cannot " +
    'be read, EOPNOTSUPP for a hugetlbfs file, EPERM unless the fd is open for writing, the caller ' +
    "owns the file (fs uid) or has CAP_FOWNER, or faccessat(2) grants W_OK on it (with the caller's " +
    'real ids, where the kernel uses the fs ids), then EINVAL for non-zero flags. The range is pages ' +
    'off >> 12 to (off + len - 1) >> 12, to the end of the file for len 0. nr_cache is counted ' +
    'honestly: the part of the range inside the file (regular files; block devices by their size) is ' +
    'mapped shared and read-only in the caller, 64 MiB at a time, and mincore(2) says which pages are ' +
    'in the page cache; a write-only fd is reopened read-only through /proc/thread-self/fd/N for ' +
    'that (if the caller may not read the file, nr_cache is 0). Other files (pipes, sockets, ' +
    'directories, character devices) have nr_cache 0, as their page cache is empty. nr_dirty, ' +
    'nr_writeback, nr_evicted and nr_recently_evicted are not knowable from user space and are ' +
    'always 0. EFAULT if the result cannot be written. The caller briefly has extra mappings. ' +
    'x86_64 callers only: an i386 caller gets ENOSYS, as from a kernel before 6.5.',
  handle(n, ctx): ShimResult | Promise<ShimResult> {
    if (n.arch !== 'x86_64') return { kind: 'errno', errno: ENOSYS };
    const [rawFd, rangePtr, cstatPtr, rawFlags] = n.args;
    const fd = rawFd & 0xffffffffn;
    const flags = rawFlags & 0xffffffffn;
    return runInCaller(n, ctx, async (s) => {
      const fl = await s.syscall('fcntl', [fd, F_GETFL]);
      if (errnoOf(fl) || fl & O_PATH) return fail(EBADF);
      let range: Buffer;
      try {
        range = s.read(rangePtr, 16);
      } catch {
        return fail(EFAULT);
      }
      const sf = s.push(Buffer.alloc(STATFS_SIZE));
      const f = await s.syscall('fstatfs', [fd, sf]);
      if (!errnoOf(f) && s.read(sf, 8).readBigUInt64LE(0) === HUGETLBFS_MAGIC) return fail(EOPNOTSUPP);
      const st = s.push(Buffer.alloc(STAT_SIZE));
      const r = await s.syscall('fstat', [fd, st]);
      if (errnoOf(r)) return { kind: 'return', value: r };
      const stat = s.read(st, STAT_SIZE);
      const mode = stat.readUInt32LE(24) & S_IFMT;
      if ((fl & O_ACCMODE) === O_RDONLY) {
        const c = creds(n.pid);
        const owner = c.fsuid === stat.readUInt32LE(28) || ((c.capEff >> CAP_FOWNER) & 1n) === 1n;
        if (!owner) {
          const w = await s.syscall('faccessat', [AT_FDCWD, s.push(Buffer.from(`/proc/thread-self/fd/${fd}\0`)), W_OK]);
          if (w !== 0n) return fail(EPERM);
        }
      }
      if (flags !== 0n) return fail(EINVAL);

      const off = range.readBigUInt64LE(0);
      const len = range.readBigUInt64LE(8);
      const first = off >> PAGE_SHIFT;
      const last = len === 0n ? U64 : ((off + len - 1n) & U64) >> PAGE_SHIFT;
      let size = 0n;
      if (mode === S_IFREG) size = stat.readBigInt64LE(48);
      else if (mode === S_IFBLK) {
        const b = s.push(Buffer.alloc(8));
        if (!errnoOf(await s.syscall('ioctl', [fd, BLKGETSIZE64, b]))) size = s.read(b, 8).readBigUInt64LE(0);
      }
      const pages = (size + PAGE - 1n) >> PAGE_SHIFT;
      const end = last < pages - 1n ? last : pages - 1n;
      let cached = 0n;
      if (first <= end) cached = await countCached(s, fd, fl, first, end);
      const out = Buffer.alloc(CACHESTAT_SIZE);
      out.writeBigUInt64LE(cached, 0);
      return writeStopped(n.pid, cstatPtr, out) ? { kind: 'return', value: 0n } : fail(EFAULT);
    });
  },
};

/** Pages first..end (inclusive) of the file open as `fd` in the caller that are in the page cache. */
async function countCached(s: InCallerSession, fd: bigint, fl: bigint, first: bigint, end: bigint): Promise<bigint> {
  let mapFd = fd;
  if ((fl & O_ACCMODE) !== O_RDONLY && (fl & O_ACCMODE) !== O_RDWR) {
    const r = await s.syscall('openat', [AT_FDCWD, s.push(Buffer.from(`/proc/thread-self/fd/${fd}\0`)), O_RDONLY | O_CLOEXEC]);
    if (errnoOf(r)) return 0n;
    mapFd = r;
  }
  const vec = await s.syscall('mmap', [0n, WINDOW, PROT_RW, MAP_PRIVATE_ANON, U64, 0n]);
  let cached = 0n;
  try {
    if (errnoOf(vec)) throw new Error(`cachestat: no room for the mincore vector (errno ${errnoOf(vec)})`);
    for (let at = first; at <= end; at += WINDOW) {
      const count = end - at + 1n < WINDOW ? end - at + 1n : WINDOW;
      const map = await s.syscall('mmap', [0n, count << PAGE_SHIFT, PROT_READ, MAP_SHARED, mapFd, at << PAGE_SHIFT]);
      if (errnoOf(map)) break;
      const m = await s.syscall('mincore', [map, count << PAGE_SHIFT, vec]);
      await s.syscall('munmap', [map, count << PAGE_SHIFT]);
      if (errnoOf(m)) break;
      for (const b of s.read(vec, Number(count))) cached += BigInt(b & 1);
    }
  } finally {
    if (!errnoOf(vec)) await s.syscall('munmap', [vec, WINDOW]);
    if (mapFd !== fd) await s.syscall('close', [mapFd]);
  }
  return cached;
}
