import { errnoOf, runInCaller } from '../src/supervisor/incaller.js';
import { writeStopped } from './host-calls.js';
import type { Shim, ShimResult } from './types.js';
import { EBADF, EFAULT, EINVAL, EISDIR, ENOSYS, EXDEV } from '../src/errno.js';

const EOVERFLOW = 75;
const F_GETFL = 3n;
const O_ACCMODE = 3n;
const O_WRONLY = 1n;
const O_RDONLY = 0n;
const O_APPEND = 0o2000n;
const O_PATH = 0o10000000n;
const SEEK_SET = 0n;
const SEEK_CUR = 1n;
const STAT_SIZE = 144;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
/** The most one read/write-like call transfers. */
const MAX_RW_COUNT = 0x7ffff000n;
/** Bytes moved per pread/pwrite pair, through a buffer mapped in the caller. */
const CHUNK = 1n << 20n;
const PROT_RW = 3n;
const MAP_PRIVATE_ANON = 0x22n;
const U64 = (1n << 64n) - 1n;

const fail = (e: number) => ({ kind: 'return', value: -BigInt(e) }) as const;

export const copyFileRangeShim: Shim = {
  name: 'copy_file_range',
  syscalls: ['copy_file_range'],
  doc:
    "copy_file_range (Linux 4.5) runs in the caller's own context (see IN-CALLER.md) as a " +
    'pread/pwrite loop through a buffer mapped in the caller for the duration of the call (1 MiB at ' +
    'a time). Checks follow the kernel\'s order: EBADF for an fd that is not open (or is O_PATH), ' +
    'EFAULT for an offset pointer that cannot be read, EINVAL for non-zero flags, EISDIR for a ' +
    'directory and EINVAL for anything but regular files, EBADF if fd_in is not readable, fd_out not ' +
    'writable or O_APPEND, EXDEV for files on different devices (as Linux 5.19 and later answer for ' +
    'file systems without a copy_file_range of their own), EOVERFLOW where an offset plus the length ' +
    'wraps, EINVAL for overlapping ranges of one file and for negative offsets. The length is cut at ' +
    "fd_in's end of file (0 at or past it) and at 0x7ffff000. With an offset pointer the file offset " +
    'is left alone and the pointer is updated; without, the file offset advances, as in the kernel. ' +
    'An error after some bytes were copied returns the count copied. Differences: no reflink or ' +
    'server-side copy (the data is always read and written), btrfs subvolumes count as different ' +
    'devices, the caller briefly has an extra anonymous mapping, and a large copy is not atomic with ' +
    'respect to other writers (neither is the kernel\'s). x86_64 callers only: an i386 caller gets ' +
    'ENOSYS, as from a kernel before 4.5.',
  handle(n, ctx): ShimResult | Promise<ShimResult> {
    if (n.arch !== 'x86_64') return { kind: 'errno', errno: ENOSYS };
    const [fdIn, offIn, fdOut, offOut, len, rawFlags] = n.args;
    const flags = rawFlags & 0xffffffffn;
    return runInCaller(n, ctx, async (s) => {
      const st = s.push(Buffer.alloc(STAT_SIZE));
      const info: { mode: number; dev: bigint; ino: bigint; size: bigint; fl: bigint }[] = [];
      for (const fd of [fdIn, fdOut]) {
        const fl = await s.syscall('fcntl', [fd, F_GETFL]);
        if (errnoOf(fl) || fl & O_PATH) return fail(EBADF);
        const r = await s.syscall('fstat', [fd, st]);
        if (errnoOf(r)) return { kind: 'return', value: r };
        const b = s.read(st, STAT_SIZE);
        info.push({ mode: b.readUInt32LE(24) & S_IFMT, dev: b.readBigUInt64LE(0), ino: b.readBigUInt64LE(8), size: b.readBigInt64LE(48), fl });
      }
      const [fin, fout] = info;
      const offset = async (ptr: bigint, fd: bigint): Promise<bigint | undefined> => {
        if (ptr === 0n) return BigInt.asIntN(64, await s.syscall('lseek', [fd, 0n, SEEK_CUR]));
        try {
          return s.read(ptr, 8).readBigInt64LE(0);
        } catch {
          return undefined;
        }
      };
      const posIn = await offset(offIn, fdIn);
      if (posIn === undefined) return fail(EFAULT);
      const posOut = await offset(offOut, fdOut);
      if (posOut === undefined) return fail(EFAULT);
      if (flags !== 0n) return fail(EINVAL);
      if (fin.mode === S_IFDIR || fout.mode === S_IFDIR) return fail(EISDIR);
      if (fin.mode !== S_IFREG || fout.mode !== S_IFREG) return fail(EINVAL);
      if ((fin.fl & O_ACCMODE) === O_WRONLY || (fout.fl & O_ACCMODE) === O_RDONLY || fout.fl & O_APPEND) return fail(EBADF);
      if (fin.dev !== fout.dev) return fail(EXDEV);
      let count = len;
      if ((BigInt.asUintN(64, posIn) + count) & ~U64 || (BigInt.asUintN(64, posOut) + count) & ~U64) return fail(EOVERFLOW);
      count = posIn >= fin.size ? 0n : count < fin.size - posIn ? count : fin.size - posIn;
      const same = fin.dev === fout.dev && fin.ino === fout.ino;
      if (same && posOut + count > posIn && posOut < posIn + count) return fail(EINVAL);
      if (posIn < 0n || posOut < 0n) return fail(EINVAL);
      if (count > MAX_RW_COUNT) count = MAX_RW_COUNT;
      if (count === 0n) return { kind: 'return', value: 0n };

      const size = count < CHUNK ? count : CHUNK;
      const buf = await s.syscall('mmap', [0n, size, PROT_RW, MAP_PRIVATE_ANON, U64, 0n]);
      if (errnoOf(buf)) return { kind: 'return', value: buf };
      let done = 0n;
      let err = 0n;
      try {
        while (done < count) {
          const want = count - done < size ? count - done : size;
          const got = await s.syscall('pread64', [fdIn, buf, want, posIn + done]);
          if (errnoOf(got) || got === 0n) {
            if (errnoOf(got)) err = got;
            break;
          }
          let put = 0n;
          while (put < got) {
            const w = await s.syscall('pwrite64', [fdOut, buf + put, got - put, posOut + done + put]);
            if (errnoOf(w) || w === 0n) {
              err = errnoOf(w) ? w : 0n;
              break;
            }
            put += w;
          }
          done += put;
          if (put < got) break;
        }
      } finally {
        await s.syscall('munmap', [buf, size]);
      }
      if (done === 0n) return { kind: 'return', value: err };
      let ret = done;
      for (const [ptr, fd, pos] of [[offIn, fdIn, posIn], [offOut, fdOut, posOut]] as const) {
        if (ptr === 0n) await s.syscall('lseek', [fd, pos + done, SEEK_SET]);
        else {
          const b = Buffer.alloc(8);
          b.writeBigInt64LE(pos + done);
          if (!writeStopped(n.pid, ptr, b)) ret = -BigInt(EFAULT);
        }
      }
      return { kind: 'return', value: ret };
    });
  },
};
