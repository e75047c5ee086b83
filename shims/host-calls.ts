import { native } from '../src/native.js';
import { CallerGoneError } from '../src/supervisor/caller.js';
import { cString, errnoOf, type InCallerSession } from '../src/supervisor/incaller.js';
import type { CallerAccess } from './types.js';
import { EFAULT } from '../src/errno.js';
export { EFAULT } from '../src/errno.js';

/*
 * Small pieces shared by the shims of newer syscalls: caller memory reads
 * that turn a bad pointer into EFAULT, writes into a caller stopped by
 * runInCaller, and host syscalls made in the supervisor (native/shimcalls.c).
 */

export const AT_FDCWD = -100n;
export const AT_SYMLINK_NOFOLLOW = 0x100n;
export const AT_EMPTY_PATH = 0x1000n;
const O_PATH = 0o10000000n;
const O_NOFOLLOW = 0o400000n;
const O_CLOEXEC = 0o2000000n;
const F_GETFD = 1n;

interface ShimCallsNative {
  shimMemfdCreate(name: Buffer, flags: number): number;
  shimPidfdOpen(pid: number, flags: number): number;
  shimInodeFlags(path: string): number;
  writeMem(pid: number, addr: bigint, data: Buffer): void;
}

function nat(): ShimCallsNative {
  return native() as unknown as ShimCallsNative;
}

/** `len` bytes of caller memory, or EFAULT. A caller that went away still throws. */
export function readOrFault(caller: CallerAccess, addr: bigint, len: number): Buffer | number {
  try {
    return caller.read(addr, len);
  } catch (e) {
    if (e instanceof CallerGoneError || (e as { errno?: number }).errno === 3) throw e;
    return EFAULT;
  }
}

/**
 * Write into a caller that runInCaller holds stopped (its notification is
 * already consumed, so CallerAccess.write would refuse). False on a bad address.
 */
export function writeStopped(pid: number, addr: bigint, data: Buffer): boolean {
  try {
    nat().writeMem(pid, addr, data);
    return true;
  } catch {
    return false;
  }
}

/** memfd_create(2) in the supervisor: the fd, or -errno. */
export function hostMemfdCreate(name: Buffer, flags: number): number {
  return nat().shimMemfdCreate(name, flags);
}

/** FS_IOC_GETFLAGS of the regular file or directory at `path`, opened by the supervisor: the flags, or -errno. */
export function hostInodeFlags(path: string): number {
  return nat().shimInodeFlags(path);
}

/** pidfd_open(2) in the supervisor (a pid of its own PID namespace): the fd, or -errno. */
export function hostPidfdOpen(pid: number, flags: number): number {
  return nat().shimPidfdOpen(pid, flags);
}

/**
 * The NUL-terminated string at `addr`, read page by page so that one ending
 * just before an unmapped page is read: its bytes without the NUL; EFAULT if
 * memory ends before the NUL; 'long' if there is no NUL in `max` bytes.
 */
export function readCString(caller: CallerAccess, addr: bigint, max: number): Buffer | number | 'long' {
  const parts: Buffer[] = [];
  let total = 0;
  let at = addr;
  while (total < max) {
    const chunk = readOrFault(caller, at, Math.min(4096 - Number(at & 4095n), max - total));
    if (typeof chunk === 'number') return chunk;
    const nul = chunk.indexOf(0);
    if (nul >= 0) return Buffer.concat([...parts, chunk.subarray(0, nul)]);
    parts.push(chunk);
    total += chunk.length;
    at += BigInt(chunk.length);
  }
  return 'long';
}

/** What a *at call names, held in a caller stopped by runInCaller. */
export interface AtTarget {
  /** An fd for it in the caller (dirfd itself, or an O_PATH fd opened for the lookup). */
  fd: bigint;
  /** Where "/proc/thread-self/fd/N" for that fd is, in the caller's memory: a path that reaches the object itself, even a symlink. */
  path: bigint;
  /** True when `fd` was opened here and must be closed (closeAtTarget). */
  opened: boolean;
}

/**
 * The object an AT_SYMLINK_NOFOLLOW or empty-path call names (or, without
 * `nofollow` and `empty`, the one a plain call names), looked up in the caller:
 * with `empty`, dirfd itself (EBADF if it is not open) or the cwd for
 * AT_FDCWD; otherwise the path opened O_PATH relative to dirfd, with
 * O_NOFOLLOW for `nofollow`. A lookup error is returned as the raw result.
 */
export async function atTarget(s: InCallerSession, dfd: bigint, path: bigint, empty: boolean, nofollow: boolean): Promise<AtTarget | bigint> {
  if (empty && BigInt.asIntN(32, dfd) !== AT_FDCWD) {
    const r = await s.syscall('fcntl', [dfd, F_GETFD]);
    if (errnoOf(r)) return r;
    const fd = BigInt.asIntN(32, dfd);
    return { fd, path: s.push(cString(`/proc/thread-self/fd/${fd}`)), opened: false };
  }
  const [at, p] = empty ? [AT_FDCWD, s.push(cString('.'))] : [dfd, path];
  const fd = await s.syscall('openat', [at, p, O_PATH | O_CLOEXEC | (nofollow || empty ? O_NOFOLLOW : 0n)]);
  if (errnoOf(fd)) return fd;
  return { fd, path: s.push(cString(`/proc/thread-self/fd/${fd}`)), opened: true };
}

/** Close what atTarget opened. */
export async function closeAtTarget(s: InCallerSession, t: AtTarget): Promise<void> {
  if (t.opened) await s.syscall('close', [t.fd]);
}
