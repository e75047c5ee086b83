import { constants } from 'node:os';

/*
 * The one source of errno numbers for vjail's TypeScript (Linux, x86_64 and
 * i386 share them). Shims and the supervisor import these rather than
 * spelling numbers, so that what a caller is told is named in one place.
 */
export const EPERM = 1;
export const ENOENT = 2;
export const ESRCH = 3;
export const EINTR = 4;
export const EIO = 5;
export const ENXIO = 6;
export const E2BIG = 7;
export const EBADF = 9;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const EACCES = 13;
export const EFAULT = 14;
export const EEXIST = 17;
export const EXDEV = 18;
export const ENOTDIR = 20;
export const EISDIR = 21;
export const EINVAL = 22;
export const ENFILE = 23;
export const EMFILE = 24;
export const ENOTTY = 25;
export const ETXTBSY = 26;
export const EROFS = 30;
export const ERANGE = 34;
export const ENAMETOOLONG = 36;
export const ENOSYS = 38;
export const ELOOP = 40;
export const EPROTO = 71;
export const EOPNOTSUPP = 95;
export const EINPROGRESS = 115;
/** Kernel-internal codes an interrupted call returns before the signal code turns them into a restart or EINTR. */
export const ERESTARTSYS = 512;
export const ERESTARTNOINTR = 513;
export const ERESTARTNOHAND = 514;
export const ENOIOCTLCMD = 515;
export const ERESTART_RESTARTBLOCK = 516;

/**
 * What a caller gets when vjail itself fails while answering (a shim threw or
 * timed out, the fd could not be installed) and the profile names no errno:
 * EIO, an error every syscall may return, never ENOSYS, which would tell a
 * program the call does not exist and send it down a fallback path.
 */
export const INTERNAL_FAILURE_ERRNO = EIO;

const names = new Map<number, string>();
for (const [name, n] of Object.entries(constants.errno)) if (!names.has(n)) names.set(n, name);

/** The symbolic name of an errno (ENOENT), or "errno N" for one Node does not know. */
export function errnoName(n: number): string {
  return names.get(n) ?? `errno ${n}`;
}

/** The errno of a Node fs error (its code, else its errno), EIO when it has none. */
export function errnoOfError(e: unknown): number {
  const err = e as NodeJS.ErrnoException;
  const n = err.code ? (constants.errno as Record<string, number>)[err.code] : undefined;
  if (n !== undefined) return n;
  return typeof err.errno === 'number' ? Math.abs(err.errno) : EIO;
}
