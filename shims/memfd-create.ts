import { closeSync } from 'node:fs';
import { hostMemfdCreate, readCString } from './host-calls.js';
import type { Shim, ShimResult } from './types.js';
import { EINVAL } from '../src/errno.js';

const MFD_CLOEXEC = 1;
/** NAME_MAX less the "memfd:" prefix. */
const MFD_NAME_MAX_LEN = 249;

export const memfdCreateShim: Shim = {
  name: 'memfd_create',
  syscalls: ['memfd_create'],
  doc:
    'memfd_create (Linux 3.17) creates the memfd in the supervisor and installs it in the caller ' +
    '(SECCOMP_IOCTL_NOTIF_ADDFD, close-on-exec as MFD_CLOEXEC asks). The flags are the host ' +
    "kernel's to judge (MFD_CLOEXEC, MFD_ALLOW_SEALING, MFD_HUGETLB with a page size, MFD_NOEXEC_SEAL, " +
    'MFD_EXEC where the host has them; EINVAL otherwise) and are checked before the name, as in the ' +
    'kernel. The name is read from the caller once: EFAULT if it cannot be read up to its NUL, EINVAL ' +
    'if it is longer than 249 bytes; the file is then named "memfd:NAME" as usual. The memory is ' +
    "charged to the supervisor's memory cgroup rather than the caller's, the file's owner is the " +
    "supervisor's fs uid and gid, and the vm.memfd_noexec setting that applies is that of the " +
    "supervisor's PID namespace. Works for i386 callers too.",
  handle(n, ctx): ShimResult {
    const [namePtr, rawFlags] = n.args;
    const flags = Number(rawFlags & 0xffffffffn);
    const name = readCString(ctx.caller, namePtr, MFD_NAME_MAX_LEN + 1);
    if (!Buffer.isBuffer(name)) {
      // The flags are checked first: try them with a harmless name.
      const probe = hostMemfdCreate(Buffer.alloc(0), flags | MFD_CLOEXEC);
      if (probe < 0) return { kind: 'errno', errno: -probe };
      closeSync(probe);
      return { kind: 'errno', errno: name === 'long' ? EINVAL : name };
    }
    const fd = hostMemfdCreate(name, flags | MFD_CLOEXEC);
    if (fd < 0) return { kind: 'errno', errno: -fd };
    return { kind: 'addfd', fd, cloexec: (flags & MFD_CLOEXEC) !== 0 };
  },
};
