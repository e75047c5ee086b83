/**
 * io_uring is a second way into the kernel: a ring runs its operations
 * without the syscalls the filter sees. A ring cannot be limited to what a
 * policy allows from outside the caller (IORING_REGISTER_RESTRICTIONS needs a
 * ring created disabled, and one set up by the supervisor would carry the
 * supervisor's identity), so vjail refuses the ring where it could do more
 * than the jail may:
 *  - a policy that does not let every syscall a ring operation stands for run
 *    unconditionally: io_uring_setup, _enter and _register fail with EPERM,
 *    as on a kernel with io_uring disabled (kernel.io_uring_disabled = 2);
 *  - a profile whose kernel lacked operations the host's ring performs: they
 *    fail with ENOSYS, as on a kernel built without io_uring.
 */
import type { Policy, PolicyEntry } from '../policy/types.js';
import { compareKernelVersions } from '../syscalls/version.js';

/** The syscalls of the io_uring interface. */
export const RING_SYSCALLS: readonly string[] = ['io_uring_setup', 'io_uring_enter', 'io_uring_register'];

/** Each operation (IORING_OP_*) with the kernel that added it and the syscall whose work it does, if any. */
const OPS: readonly [op: string, since: string, syscall?: string][] = [
  ['NOP', '5.1'], ['READV', '5.1', 'readv'], ['WRITEV', '5.1', 'writev'], ['FSYNC', '5.1', 'fsync'],
  ['READ_FIXED', '5.1', 'pread64'], ['WRITE_FIXED', '5.1', 'pwrite64'], ['POLL_ADD', '5.1', 'poll'], ['POLL_REMOVE', '5.1'],
  ['SYNC_FILE_RANGE', '5.2', 'sync_file_range'], ['SENDMSG', '5.3', 'sendmsg'], ['RECVMSG', '5.3', 'recvmsg'],
  ['TIMEOUT', '5.4'], ['TIMEOUT_REMOVE', '5.5'], ['ACCEPT', '5.5', 'accept4'], ['ASYNC_CANCEL', '5.5'],
  ['LINK_TIMEOUT', '5.5'], ['CONNECT', '5.5', 'connect'], ['FALLOCATE', '5.6', 'fallocate'], ['OPENAT', '5.6', 'openat'],
  ['CLOSE', '5.6', 'close'], ['FILES_UPDATE', '5.6'], ['STATX', '5.6', 'statx'], ['READ', '5.6', 'read'], ['WRITE', '5.6', 'write'],
  ['FADVISE', '5.6', 'fadvise64'], ['MADVISE', '5.6', 'madvise'], ['SEND', '5.6', 'sendto'], ['RECV', '5.6', 'recvfrom'],
  ['OPENAT2', '5.6', 'openat2'], ['EPOLL_CTL', '5.6', 'epoll_ctl'], ['SPLICE', '5.7', 'splice'], ['PROVIDE_BUFFERS', '5.7'],
  ['REMOVE_BUFFERS', '5.7'], ['TEE', '5.8', 'tee'], ['SHUTDOWN', '5.11', 'shutdown'], ['RENAMEAT', '5.11', 'renameat2'],
  ['UNLINKAT', '5.11', 'unlinkat'], ['MKDIRAT', '5.15', 'mkdirat'], ['SYMLINKAT', '5.15', 'symlinkat'], ['LINKAT', '5.15', 'linkat'],
  ['MSG_RING', '5.18'], ['FSETXATTR', '5.19', 'fsetxattr'], ['SETXATTR', '5.19', 'setxattr'], ['FGETXATTR', '5.19', 'fgetxattr'],
  ['GETXATTR', '5.19', 'getxattr'], ['SOCKET', '5.19', 'socket'], ['URING_CMD', '5.19', 'ioctl'], ['SEND_ZC', '6.0', 'sendto'],
  ['SENDMSG_ZC', '6.1', 'sendmsg'], ['READ_MULTISHOT', '6.7', 'read'], ['WAITID', '6.7', 'waitid'], ['FUTEX_WAIT', '6.7', 'futex'],
  ['FUTEX_WAKE', '6.7', 'futex'], ['FUTEX_WAITV', '6.7', 'futex_waitv'], ['FIXED_FD_INSTALL', '6.8', 'dup3'],
  ['FTRUNCATE', '6.9', 'ftruncate'], ['BIND', '6.11', 'bind'], ['LISTEN', '6.11', 'listen'], ['RECV_ZC', '6.15', 'recvfrom'],
  ['EPOLL_WAIT', '6.15', 'epoll_wait'], ['READV_FIXED', '6.15', 'preadv'], ['WRITEV_FIXED', '6.15', 'pwritev'],
  ['PIPE', '6.16', 'pipe2'],
];

const has = (kernel: string, since: string): boolean => compareKernelVersions(kernel, since) >= 0;

/** Operations a ring on `kernel` performs. */
export function ringOps(kernel: string): string[] {
  return OPS.filter(([, since]) => has(kernel, since)).map(([op]) => op);
}

/** Operations the host's ring performs that `profileKernel` did not have. */
export function opsBeyond(hostKernel: string, profileKernel: string): string[] {
  return OPS.filter(([, since]) => has(hostKernel, since) && !has(profileKernel, since)).map(([op]) => op);
}

/** Does the policy let every call of `name` run, whatever its arguments? */
function runsFreely(entries: readonly PolicyEntry[], policy: Policy): boolean {
  const runs = (k: string) => k === 'allow' || k === 'log';
  for (const e of entries) {
    if (!runs(e.action.kind)) return false;
    if (e.conditions.length === 0) return true;
  }
  return runs(policy.defaultAction.kind);
}

/**
 * Syscalls a ring on `kernel` could stand in for that the policy does not
 * let run freely, sorted; empty when the ring is no way around the policy.
 */
export function policyDeniedRingWork(policy: Policy, entries: ReadonlyMap<string, PolicyEntry[]>, kernel: string): string[] {
  const out = new Set<string>();
  for (const [, since, syscall] of OPS) {
    if (syscall && has(kernel, since) && !runsFreely(entries.get(syscall) ?? [], policy)) out.add(syscall);
  }
  return [...out].sort();
}
