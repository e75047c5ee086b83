import { runInCaller } from '../src/supervisor/incaller.js';
import { AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, atTarget, closeAtTarget, readOrFault } from './host-calls.js';
import type { Shim, ShimResult } from './types.js';
import { EINVAL, ENOSYS } from '../src/errno.js';


export const fchmodat2Shim: Shim = {
  name: 'fchmodat2',
  syscalls: ['fchmodat2'],
  doc:
    "fchmodat2 (Linux 6.6) runs in the caller's own context (see IN-CALLER.md), so paths resolve " +
    "against the caller's cwd, root and dirfd and permissions are the caller's. Flags other than " +
    'AT_SYMLINK_NOFOLLOW and AT_EMPTY_PATH are EINVAL. Without flags it is fchmodat(2). With ' +
    'AT_SYMLINK_NOFOLLOW the path is opened O_PATH|O_NOFOLLOW and the mode is set through ' +
    "/proc/thread-self/fd/N, which reaches the symlink itself where the path names one (so the " +
    "file system's answer, usually EOPNOTSUPP, is the one the kernel gives). AT_EMPTY_PATH with " +
    'an empty path changes dirfd itself (EBADF if it is not open; the cwd for AT_FDCWD). The ' +
    'caller must see a procfs at /proc for the AT_SYMLINK_NOFOLLOW and empty-path forms. x86_64 ' +
    'callers only: an i386 caller gets ENOSYS, as from a kernel before 6.6.',
  handle(n, ctx): ShimResult | Promise<ShimResult> {
    if (n.arch !== 'x86_64') return { kind: 'errno', errno: ENOSYS };
    const [dfd, path, mode, rawFlags] = n.args;
    const flags = rawFlags & 0xffffffffn;
    if (flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH)) return { kind: 'errno', errno: EINVAL };
    let empty = false;
    if (flags & AT_EMPTY_PATH) {
      const first = readOrFault(ctx.caller, path, 1);
      if (typeof first === 'number') return { kind: 'errno', errno: first };
      empty = first[0] === 0;
    }
    const plain = !empty && !(flags & AT_SYMLINK_NOFOLLOW);
    return runInCaller(n, ctx, async (s) => {
      if (plain) return { kind: 'return', value: await s.syscall('fchmodat', [dfd, path, mode]) };
      const t = await atTarget(s, dfd, path, empty, true);
      if (typeof t === 'bigint') return { kind: 'return', value: t };
      const r = await s.syscall('fchmodat', [AT_FDCWD, t.path, mode]);
      await closeAtTarget(s, t);
      return { kind: 'return', value: r };
    });
  },
};
