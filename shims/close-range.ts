import { readdirSync } from 'node:fs';
import { runInCaller } from '../src/supervisor/incaller.js';
import type { Shim, ShimResult } from './types.js';
import { EINVAL, ENOSYS } from '../src/errno.js';

const CLOSE_RANGE_UNSHARE = 2n;
const CLOSE_RANGE_CLOEXEC = 4n;
const CLONE_FILES = 0x400n;
const F_SETFD = 2n;
const FD_CLOEXEC = 1n;

/** The caller thread's open fds in [first, last], ascending, from the supervisor's /proc. */
function openFds(tid: number, first: bigint, last: bigint): bigint[] {
  return readdirSync(`/proc/${tid}/fd`)
    .filter((e) => /^\d+$/.test(e))
    .map((e) => BigInt(e))
    .filter((fd) => fd >= first && fd <= last)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

export const closeRangeShim: Shim = {
  name: 'close_range',
  syscalls: ['close_range'],
  doc:
    "close_range (Linux 5.9) runs in the caller's own context (see IN-CALLER.md): flags other " +
    'than CLOSE_RANGE_UNSHARE and CLOSE_RANGE_CLOEXEC, or first > last, are EINVAL (arguments ' +
    'are unsigned 32-bit, as in the kernel); CLOSE_RANGE_UNSHARE first unshares the fd table ' +
    '(unshare(CLONE_FILES), whose error is returned); then every fd open in the range is closed, ' +
    'or marked close-on-exec with CLOSE_RANGE_CLOEXEC, one call each, and the result is 0. Unlike ' +
    'the kernel this is not atomic: an fd another thread of the caller opens in the range while ' +
    'it runs may be left open. x86_64 callers only: an i386 caller gets ENOSYS, as before 5.9.',
  handle(n, ctx): ShimResult | Promise<ShimResult> {
    if (n.arch !== 'x86_64') return { kind: 'errno', errno: ENOSYS };
    const [first, last, flags] = n.args.map((a) => a & 0xffffffffn);
    if (flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC)) return { kind: 'errno', errno: EINVAL };
    if (first > last) return { kind: 'errno', errno: EINVAL };
    return runInCaller(n, ctx, async (s) => {
      if (flags & CLOSE_RANGE_UNSHARE) {
        const r = await s.syscall('unshare', [CLONE_FILES]);
        if (r !== 0n) return { kind: 'return', value: r };
      }
      for (const fd of openFds(n.pid, first, last)) {
        if (flags & CLOSE_RANGE_CLOEXEC) await s.syscall('fcntl', [fd, F_SETFD, FD_CLOEXEC]);
        else await s.syscall('close', [fd]);
      }
      return { kind: 'return', value: 0n };
    });
  },
};
