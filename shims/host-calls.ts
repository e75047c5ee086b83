import { native } from '../src/native.js';
import { CallerGoneError } from '../src/supervisor/caller.js';
import type { CallerAccess } from './types.js';

/*
 * Small pieces shared by the shims of newer syscalls: caller memory reads
 * that turn a bad pointer into EFAULT, writes into a caller stopped by
 * runInCaller, and host syscalls made in the supervisor (native/shimcalls.c).
 */

export const EFAULT = 14;

interface ShimCallsNative {
  shimMemfdCreate(name: Buffer, flags: number): number;
  shimPidfdOpen(pid: number, flags: number): number;
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
