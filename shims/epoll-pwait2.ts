import { errnoOf, passThrough, runInCaller } from '../src/supervisor/incaller.js';
import { readOrFault } from './host-calls.js';
import type { Shim, ShimResult } from './types.js';
import { EINTR, EINVAL, ENOSYS } from '../src/errno.js';

const SIGSET_SIZE = 8n;
/** SIGKILL and SIGSTOP: no mask blocks them. */
const UNBLOCKABLE = (1n << 8n) | (1n << 18n);

const NSEC_PER_SEC = 1_000_000_000n;
const NSEC_PER_MSEC = 1_000_000n;
const INT_MAX = 0x7fffffffn;

export const epollPwait2Shim: Shim = {
  name: 'epoll_pwait2',
  mayBlock: true,
  syscalls: ['epoll_pwait2'],
  doc:
    "epoll_pwait2 (Linux 5.11) runs epoll_pwait(2) in the caller's own context (see IN-CALLER.md), " +
    'so it blocks the calling thread, with the call\'s signal mask applied by the kernel for the wait. ' +
    'The mask is read first and is in force from the moment the supervisor attaches to the caller: a ' +
    'signal it blocks that arrives while the emulation prepares the wait is held back and queued again ' +
    'as the call returns (delivered then, as the kernel delivers a pending signal when the mask is ' +
    'restored), so it never interrupts the call. An unblocked signal with a handler ends it with EINTR, ' +
    'never restarted, whatever SA_RESTART says, as natively; an unblocked signal without a handler does ' +
    'not end it. Limit: a signal that arrives between the call\'s entry and the supervisor\'s attach ' +
    '(the time the notification takes to reach the supervisor) still finds only the thread\'s own mask, ' +
    'as that wait is the kernel\'s seccomp wait. The timeout is read once: EFAULT if it cannot be read, ' +
    'EINVAL for a negative tv_sec or a tv_nsec outside 0..999999999; otherwise it becomes milliseconds ' +
    'rounded up (so the wait is never shorter than asked, and at most 1 ms longer), capped at ' +
    '0x7fffffff ms (about 24.8 days: a longer wait ends then with 0 events); a NULL timeout waits ' +
    'without limit. Everything else (maxevents, the events buffer, the fd, the signal mask and its ' +
    'size) is checked by epoll_pwait itself, which does it in the same order. x86_64 callers only: an ' +
    'i386 caller gets ENOSYS, as from a kernel before 5.11.',
  handle(n, ctx): ShimResult | Promise<ShimResult> {
    if (n.arch !== 'x86_64') return { kind: 'errno', errno: ENOSYS };
    const [epfd, events, maxevents, timeout, sigmask, sigsetsize] = n.args;
    let ms = -1n;
    if (timeout !== 0n) {
      const ts = readOrFault(ctx.caller, timeout, 16);
      if (typeof ts === 'number') return { kind: 'errno', errno: ts };
      const sec = ts.readBigInt64LE(0);
      const nsec = ts.readBigInt64LE(8);
      if (sec < 0n || nsec < 0n || nsec >= NSEC_PER_SEC) return { kind: 'errno', errno: EINVAL };
      ms = sec * 1000n + (nsec + NSEC_PER_MSEC - 1n) / NSEC_PER_MSEC;
      if (ms > INT_MAX) ms = INT_MAX;
    }
    // The call's mask is in force from its entry: signals it blocks must not end the
    // wait while the caller is attached and prepared. An unreadable mask or a wrong
    // size is left to epoll_pwait, which fails the same way (EFAULT, EINVAL).
    let blocks = 0n;
    if (sigmask !== 0n && sigsetsize === SIGSET_SIZE) {
      const m = readOrFault(ctx.caller, sigmask, 8);
      if (typeof m !== 'number') blocks = m.readBigUInt64LE(0) & ~UNBLOCKABLE;
    }
    return runInCaller(
      n,
      ctx,
      async (s) => {
        const r = await s.syscall('epoll_pwait', [epfd, events, maxevents, BigInt.asUintN(64, ms), sigmask, sigsetsize]);
        // epoll waits are never restarted: a handler that ran makes them fail with EINTR.
        return errnoOf(r) === EINTR ? { kind: 'return', value: -BigInt(EINTR) } : passThrough(r);
      },
      { blocks, eintrOnly: true },
    );
  },
};
