import { cString, errnoOf, runInCaller } from '../src/supervisor/incaller.js';
import type { Shim, ShimResult } from './types.js';

const EINVAL = 22;
const EFAULT = 14;
const ENOSYS = 38;
const AT_FDCWD = -100n;
const AT_SYMLINK_NOFOLLOW = 0x100n;
const AT_EMPTY_PATH = 0x1000n;
const O_PATH = 0o10000000n;
const O_NOFOLLOW = 0o400000n;
const O_CLOEXEC = 0o2000000n;
const F_GETFD = 1n;

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
      try {
        empty = ctx.caller.read(path, 1)[0] === 0;
      } catch (e) {
        if ((e as { errno?: number }).errno === 3) throw e;
        return { kind: 'errno', errno: EFAULT };
      }
    }
    const plain = !empty && !(flags & AT_SYMLINK_NOFOLLOW);
    const dirfd = BigInt.asIntN(32, dfd);
    return runInCaller(n, ctx, async (s) => {
      if (plain) return { kind: 'return', value: await s.syscall('fchmodat', [dfd, path, mode]) };
      let target: bigint;
      let opened = false;
      if (empty && dirfd !== AT_FDCWD) {
        const r = await s.syscall('fcntl', [dfd, F_GETFD]);
        if (errnoOf(r)) return { kind: 'return', value: r };
        target = dirfd;
      } else {
        const [at, p] = empty ? [AT_FDCWD, s.push(cString('.'))] : [dfd, path];
        const r = await s.syscall('openat', [at, p, O_PATH | O_NOFOLLOW | O_CLOEXEC]);
        if (errnoOf(r)) return { kind: 'return', value: r };
        target = r;
        opened = true;
      }
      const viaProc = s.push(cString(`/proc/thread-self/fd/${target}`));
      const r = await s.syscall('fchmodat', [AT_FDCWD, viaProc, mode]);
      if (opened) await s.syscall('close', [target]);
      return { kind: 'return', value: r };
    });
  },
};
