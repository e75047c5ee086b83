/**
 * The door to native/fdio.c: raw system calls in vjail's own process, a
 * non-consuming peek at a pipe, and sending a descriptor with a header.
 * Checkpoint and restore of descriptors (src/checkpoint/parts/fds/) use it
 * to inspect a jail's descriptions (after pidfd_getfd) and to build new ones.
 */
import { errnoName } from '../errno.js';
import { native } from '../native.js';

interface FdioAddon {
  sys(nr: number, args: (number | bigint | Buffer)[]): bigint;
  pipePeek(fd: number, capacity: number): Buffer;
  sendFd(sock: number, header: Buffer, fd: number): number;
  pidfdGetfd(pidfd: number, targetFd: number): number;
  probeFds(pid: number, fd: number): ProbedFd[];
  outsideLinks(exclude: Int32Array, paths: string[]): (number | string)[];
}

/** [fd, link, fdinfo text, stat as dev, ino, mode, nlink, uid, gid, rdev, size (u64 each) or null]. */
export type ProbedFd = [number, string, string, Buffer | null];

const addon = (): FdioAddon => native() as unknown as FdioAddon;

/** A system call made by vjail itself failed. */
export class SysError extends Error {
  override name = 'SysError';
  constructor(
    readonly what: string,
    readonly errno: number,
  ) {
    super(`${what} failed: ${errnoName(errno)}`);
  }
}

/** The raw call: its result, or a negative errno. Buffers are passed as the address of their bytes. */
export function sys(nr: number, ...args: (number | bigint | Buffer)[]): bigint {
  return addon().sys(nr, args);
}

/** As `sys`, but a failure throws a SysError naming `what`. */
export function sysOk(what: string, nr: number, ...args: (number | bigint | Buffer)[]): number {
  const r = sys(nr, ...args);
  if (r < 0n) throw new SysError(what, Number(-r));
  return Number(r);
}

/** The bytes queued in the pipe whose read end is `fd`, left queued. */
export function pipePeek(fd: number, capacity: number): Buffer {
  return addon().pipePeek(fd, capacity);
}

/** Send `header` and, unless fd is -1, the descriptor: bytes sent, or -EAGAIN when the socket is full. */
export function sendFd(sock: number, header: Buffer, fd: number): number {
  return addon().sendFd(sock, header, fd);
}

/** A duplicate (close-on-exec) of descriptor `fd` of the process behind `pidfd`. */
export function pidfdGetfd(pidfd: number, fd: number): number {
  return addon().pidfdGetfd(pidfd, fd);
}

/** The descriptors of a (stopped) process, by number, read from /proc in one native call; with `fd`, that one only. */
export function probeFds(pid: number, fd = -1): ProbedFd[] {
  return addon().probeFds(pid, fd);
}

/** [pid, link, ...] of every pipe and socket descriptor, and every one open on one of `paths`, of all processes but `exclude`. */
export function outsideLinks(exclude: Int32Array, paths: string[]): (number | string)[] {
  return addon().outsideLinks(exclude, paths);
}
