import { closeSync, constants as fsc, fstatSync, lstatSync, open as fsOpen, openSync, readFileSync, readlinkSync, statfsSync, statSync } from 'node:fs';
import { constants as osc } from 'node:os';
import type { Profile } from '../src/profile/types.js';
import { memfdSealed } from '../src/features.js';
import { readCString } from './host-calls.js';
import { presentedSysctls, procVersion, READ_ONLY_SYSCTLS } from './kernel-files.js';
import type { CallerAccess, Notification, Shim, ShimResult } from './types.js';

/*
 * open, openat and openat2 under a non-host profile. The files that name the
 * kernel (/proc/version, /proc/sys/kernel/{ostype,osrelease,version,domainname},
 * and hostname when the profile fixes one) must show the profile, whatever
 * path leads to them. Deciding that from the path string and then letting the
 * kernel run the call would be unsound: another thread of the caller can
 * rewrite the string between our read and the kernel's. So the supervisor
 * opens every file itself, on the caller's behalf, and hands the caller the
 * resulting fd (SECCOMP_IOCTL_NOTIF_ADDFD); what it hands back is decided
 * from the opened file, never from caller memory.
 */

const O_ACCMODE = 3;
const O_RDONLY = 0;
const O_CREAT = 0o100;
const O_NOFOLLOW = 0o400000;
const O_DIRECTORY = 0o200000;
const O_TMPFILE = 0o20000000 | O_DIRECTORY;
const O_CLOEXEC = 0o2000000;
const O_PATH = 0o10000000;
const O_EXCL = 0o200;
/** RESOLVE_NO_XDEV | NO_MAGICLINKS | NO_SYMLINKS | BENEATH | IN_ROOT | CACHED (VALID_RESOLVE_FLAGS). */
const VALID_RESOLVE_FLAGS = 0x3fn;

/** Flags openat2 accepts (VALID_OPEN_FLAGS of the kernel). */
const VALID_OPEN_FLAGS = 0o3 | 0o100 | 0o200 | 0o400 | 0o1000 | 0o2000 | 0o4000 | 0o4010000 | 0o10000 | 0o20000 | 0o40000 | 0o100000 | O_DIRECTORY | O_NOFOLLOW | 0o1000000 | O_CLOEXEC | O_PATH | 0o20000000;
const AT_FDCWD = -100;
const PROC_SUPER_MAGIC = 0x9fa0;
const PATH_MAX = 4096;
const MAX_SYMLINKS = 40;
const OPEN_HOW_SIZE = 24;

const E = osc.errno;
const SLASH = 0x2f;

/** A file descriptor error as a syscall result. */
function fail(errno: number): ShimResult {
  return { kind: 'errno', errno };
}

function errnoOf(e: unknown): number {
  const code = (e as NodeJS.ErrnoException).code;
  const n = code ? (E as Record<string, number>)[code] : undefined;
  if (n !== undefined) return n;
  const raw = (e as NodeJS.ErrnoException).errno;
  return typeof raw === 'number' ? Math.abs(raw) : E.EIO;
}

/** The NUL-terminated path at `addr`, as bytes, or an errno. */
function readPath(caller: CallerAccess, addr: bigint): Buffer | number {
  const p = readCString(caller, addr, PATH_MAX);
  return p === 'long' ? E.ENAMETOOLONG : p;
}

function split(p: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= p.length; i++) {
    if (i === p.length || p[i] === SLASH) {
      if (i > start) out.push(p.subarray(start, i));
      start = i + 1;
    }
  }
  return out;
}

function join(prefix: string, parts: readonly Buffer[]): Buffer {
  const chunks: Buffer[] = [Buffer.from(prefix)];
  for (const p of parts) chunks.push(Buffer.from('/'), p);
  return Buffer.concat(chunks);
}

const isName = (b: Buffer, s: string): boolean => b.length === s.length && b.toString('latin1') === s;

/** What /proc/TID/status says about the caller that decides how a file may be opened for it. */
interface CallerState {
  /** Uid, Gid, Groups and CapEff lines: whose permissions an open runs with. */
  creds: string;
  umask: number;
  /** Thread group and thread id in the caller's own PID namespace (for /proc/self). */
  nsTgid: string;
  nsTid: string;
}

function callerState(pid: number | 'self'): CallerState {
  const status = readFileSync(`/proc/${pid}/status`, 'latin1');
  const line = (key: string): string => new RegExp(`^${key}:[ \\t]*(.*)$`, "m").exec(status)?.[1].trim() ?? '';
  const last = (key: string): string => line(key).split(/\s+/).pop() ?? '';
  return {
    creds: ['Uid', 'Gid', 'Groups', 'CapEff'].map((k) => `${k}=${line(k)}`).join(' '),
    umask: parseInt(line('Umask') || '22', 8),
    nsTgid: last('NStgid') || line('Tgid'),
    nsTid: last('NSpid') || line('Pid'),
  };
}

let ownCreds: string | undefined;
let warnedCreds = false;

function isProc(path: Buffer | string): boolean {
  try {
    return statfsSync(path).type === PROC_SUPER_MAGIC;
  } catch {
    return false;
  }
}

/**
 * Resolve `path` as the caller would, in the supervisor's view of its files
 * (through /proc/PID/root, so the caller's root and mount namespace apply).
 * Ordinary symlinks are followed here, so that a "self" or "thread-self"
 * reached at the top of a procfs is replaced by the caller's ids (opened by
 * the supervisor it would name the supervisor). At a procfs magic link
 * (/proc/PID/fd/N, cwd, root, exe...) the rest is left to the kernel, which
 * follows those the same for any opener. Errors are left to the kernel too:
 * the returned path, opened, fails as the caller's would.
 */
/** Set by resolveFor: whether the last component it looked at was a regular file or a directory (an open that cannot block). */
let lastWasPlain = false;

function resolveFor(pid: number, st: CallerState, dirfd: number, path: Buffer, followLast: boolean): Buffer | number {
  lastWasPlain = false;
  const root = `/proc/${pid}/root`;
  let stack: Buffer[] = [];
  if (path[0] !== SLASH) {
    const base = dirfd === AT_FDCWD ? `/proc/${pid}/cwd` : `/proc/${pid}/fd/${dirfd}`;
    let target: Buffer;
    try {
      target = readlinkSync(base, { encoding: 'buffer' });
    } catch (e) {
      return errnoOf(e) === E.ENOENT && dirfd !== AT_FDCWD ? E.EBADF : errnoOf(e);
    }
    const t = target.toString('latin1');
    // A deleted directory or a non-path object: let the kernel walk from the link itself.
    if (t[0] !== '/' || t.endsWith(' (deleted)')) {
      if (dirfd !== AT_FDCWD && t[0] !== '/') return E.ENOTDIR;
      return join(base, split(path));
    }
    stack = split(target);
  }
  const queue = split(path);
  const trailingSlash = path[path.length - 1] === SLASH;
  let links = 0;
  while (queue.length > 0) {
    const c = queue.shift()!;
    const last = queue.length === 0;
    if (isName(c, '.')) continue;
    if (isName(c, '..')) {
      stack.pop();
      continue;
    }
    if ((isName(c, 'self') || isName(c, 'thread-self')) && isProcRoot(join(root, stack))) {
      if (isName(c, 'self')) stack.push(Buffer.from(st.nsTgid));
      else stack.push(Buffer.from(st.nsTgid), Buffer.from('task'), Buffer.from(st.nsTid));
      continue;
    }
    const here = join(root, [...stack, c]);
    let s;
    try {
      s = lstatSync(here);
    } catch {
      return Buffer.concat([join(root, [...stack, c, ...queue]), Buffer.from(trailingSlash ? '/' : '')]);
    }
    if (s.isSymbolicLink() && (!last || followLast || trailingSlash)) {
      const target = readlinkSync(here, { encoding: 'buffer' });
      if (isProc(join(root, stack)) && (target[0] === SLASH || target.includes(0x3a /* ':' */))) {
        // A magic link: the kernel jumps to the object itself.
        return Buffer.concat([join(root, [...stack, c, ...queue]), Buffer.from(trailingSlash ? '/' : '')]);
      }
      if (++links > MAX_SYMLINKS) return E.ELOOP;
      if (target[0] === SLASH) stack = [];
      queue.unshift(...split(target));
      continue;
    }
    if (!last && !s.isDirectory()) {
      return join(root, [...stack, c, ...queue]);
    }
    lastWasPlain = last && (s.isFile() || s.isDirectory());
    stack.push(c);
  }
  return Buffer.concat([join(root, stack), Buffer.from(trailingSlash ? '/' : '')]);
}

function isProcRoot(dir: Buffer): boolean {
  try {
    return statSync(dir).ino === 1 && isProc(dir);
  } catch {
    return false;
  }
}

let procVersionIno: number | undefined;

/** The profile's content for the file open as `fd`, if it is one the profile presents; and its sysctl name. */
function presented(fd: number, profile: Profile): { content: string; key: string } | undefined {
  const link = readlinkSync(`/proc/self/fd/${fd}`);
  const tail = /\/([a-z]+)$/.exec(link)?.[1];
  if (!tail || !['version', 'ostype', 'osrelease', 'domainname', 'hostname'].includes(tail)) return undefined;
  if (!isProc(`/proc/self/fd/${fd}`)) return undefined;
  const sys = /\/sys\/(kernel\/[a-z]+)$/.exec(link)?.[1];
  if (sys) {
    const v = presentedSysctls(profile).get(sys);
    return v === undefined ? undefined : { content: `${v}\n`, key: sys };
  }
  procVersionIno ??= statSync('/proc/version').ino;
  if (tail === 'version' && fstatSync(fd).ino === procVersionIno) return { content: procVersion(profile), key: 'version' };
  return undefined;
}

const memfds = new Map<string, number>();

/** A fresh read-only fd (its own file offset) of a sealed memfd holding `content`. */
function contentFd(key: string, content: string): number {
  const id = `${key}\0${content}`;
  let base = memfds.get(id);
  if (base === undefined) {
    base = memfdSealed(key.replace(/\W/g, '_'), Buffer.from(content));
    memfds.set(id, base);
  }
  return openSync(`/proc/self/fd/${base}`, fsc.O_RDONLY);
}

function openAsync(path: Buffer, flags: number): Promise<number> {
  return new Promise((resolve, reject) => fsOpen(path, flags, (err, fd) => (err ? reject(err) : resolve(fd))));
}

interface OpenRequest {
  dirfd: number;
  pathAddr: bigint;
  flags: number;
  mode: number;
}

/** The arguments of open/openat, or of openat2 with its struct open_how read and checked as the kernel does. */
function request(n: Notification, caller: CallerAccess): OpenRequest | ShimResult {
  const a = n.args;
  const int = (v: bigint): number => Number(BigInt.asIntN(32, v));
  const uint = (v: bigint): number => Number(BigInt.asUintN(32, v));
  if (n.name === 'open') return { dirfd: AT_FDCWD, pathAddr: a[0], flags: uint(a[1]), mode: uint(a[2]) & 0o7777 };
  if (n.name === 'openat') return { dirfd: int(a[0]), pathAddr: a[1], flags: uint(a[2]), mode: uint(a[3]) & 0o7777 };
  const size = n.arch === 'i386' ? BigInt.asUintN(32, a[3]) : a[3];
  if (size < BigInt(OPEN_HOW_SIZE)) return fail(E.EINVAL);
  if (size > 4096n) return fail(E.E2BIG);
  let how: Buffer;
  try {
    how = caller.read(a[2], Number(size));
  } catch (e) {
    if ((e as { errno?: number }).errno === 3) throw e;
    return fail(E.EFAULT);
  }
  if (how.subarray(OPEN_HOW_SIZE).some((b) => b !== 0)) return fail(E.E2BIG);
  const flags = how.readBigUInt64LE(0);
  const mode = how.readBigUInt64LE(8);
  const resolve = how.readBigUInt64LE(16);
  if (flags > 0xffffffffn || (Number(flags) & ~VALID_OPEN_FLAGS) !== 0) return fail(E.EINVAL);
  const f = Number(flags);
  const creating = (f & O_CREAT) !== 0 || (f & O_TMPFILE) === O_TMPFILE;
  if (mode > 0o7777n || (!creating && mode !== 0n)) return fail(E.EINVAL);
  // Unknown resolve bits are EINVAL, as from the kernel (after the flags and the mode).
  if (resolve & ~VALID_RESOLVE_FLAGS) return fail(E.EINVAL);
  // RESOLVE_* restrictions are not emulated: answer as a kernel without openat2, and callers fall back to openat.
  if (resolve !== 0n) return fail(E.ENOSYS);
  return { dirfd: int(a[0]), pathAddr: a[1], flags: f, mode: Number(mode) };
}

async function handleOpen(n: Notification, profile: Profile, caller: CallerAccess, warn: (line: string) => void): Promise<ShimResult> {
  const req = request(n, caller);
  if ('kind' in req) return req;
  const path = readPath(caller, req.pathAddr);
  if (typeof path === 'number') return fail(path);
  if (path.length === 0) return fail(E.ENOENT);
  if (req.dirfd < 0 && req.dirfd !== AT_FDCWD && path[0] !== SLASH) return fail(E.EBADF);

  const st = callerState(n.pid);
  ownCreds ??= callerState('self').creds;
  if (st.creds !== ownCreds) {
    // Opening with our own credentials would grant or deny what the kernel would not.
    if (!warnedCreds) warn(`open: a process in the jail runs with credentials other than vjail's; its opens fail with EACCES (${st.creds} vs ${ownCreds})`);
    warnedCreds = true;
    return fail(E.EACCES);
  }
  const creating = (req.flags & O_CREAT) !== 0 || (req.flags & O_TMPFILE) === O_TMPFILE;
  const followLast = (req.flags & O_NOFOLLOW) === 0 && !((req.flags & O_CREAT) !== 0 && (req.flags & O_EXCL) !== 0);
  const target = resolveFor(n.pid, st, req.dirfd, path, followLast);
  if (typeof target === 'number') return fail(target);

  let fd: number;
  try {
    if (creating || lastWasPlain) {
      // Synchronous: a regular file or directory does not block in open. The caller's
      // umask applies to what it creates; set only around this call, so no other open sees it.
      const old = process.umask(st.umask);
      try {
        fd = openSync(target, req.flags, req.mode);
      } finally {
        process.umask(old);
      }
    } else {
      // Off the main thread: a FIFO, a terminal or a path we did not walk to the end can block in open.
      fd = await openAsync(target, req.flags);
    }
  } catch (e) {
    return fail(errnoOf(e));
  }
  const cloexec = (req.flags & O_CLOEXEC) !== 0;
  try {
    const p = (req.flags & O_PATH) === 0 ? presented(fd, profile) : undefined;
    if (!p) return { kind: 'addfd', fd, cloexec };
    if ((req.flags & O_ACCMODE) !== O_RDONLY) {
      // Writable presented sysctls (hostname, domainname) keep the kernel's file; the others refuse writers as the kernel does.
      if (p.key === 'version' || READ_ONLY_SYSCTLS.has(p.key)) {
        closeSync(fd);
        return fail(E.EACCES);
      }
      return { kind: 'addfd', fd, cloexec };
    }
    closeSync(fd);
    return { kind: 'addfd', fd: contentFd(p.key, p.content), cloexec };
  } catch (e) {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
    throw e;
  }
}

export const openShim: Shim = {
  name: 'open',
  syscalls: ['open', 'openat', 'openat2'],
  doc:
    'Where the profile\'s kernel files are not mounted over the real ones (vjail not root, or --kernel-files shim), ' +
    'every open, openat and openat2 under a non-host profile is performed by the supervisor on the caller\'s behalf ' +
    'and the resulting file handed to the caller (SECCOMP_IOCTL_NOTIF_ADDFD), so that /proc/version and ' +
    '/proc/sys/kernel/{ostype,osrelease,version,domainname} (and hostname when the profile sets a nodename) show the ' +
    'profile through any path that leads to them (symlinks, "..", relative to a directory fd, /proc/self/root/...), ' +
    'while nothing is decided from caller memory that the kernel would read again. The path is resolved as the caller ' +
    'would: through /proc/PID/root and /proc/PID/cwd (its root, mount namespace and working directory), with "self" and ' +
    '"thread-self" in procfs meaning the caller; the caller\'s umask applies to created files. A presented file is a ' +
    'sealed, read-only memfd with the profile\'s content (a new file offset per open); opening one for writing fails ' +
    'with EACCES. Limits: a caller whose uid, gid, groups or effective capabilities differ from the supervisor\'s gets ' +
    'EACCES (the supervisor cannot open with its credentials); openat2 with RESOLVE_* flags gets ENOSYS (as from a ' +
    'kernel without openat2); an open that blocks (a FIFO without a writer) waits in a libuv worker thread, so more ' +
    'than four such opens at once delay the others; the supervisor\'s own creds and LSM context are those the kernel ' +
    'checks. The host profile does not intercept opens at all.',
  presentsProfile(_syscall: string, profile: Profile): boolean {
    return !profile.isHost;
  },
  probeArgs: {
    // A NULL path: EFAULT from a kernel that has the call.
    open: [0n, 0n, 0n, 0n, 0n, 0n],
    openat: [BigInt.asUintN(64, -100n), 0n, 0n, 0n, 0n, 0n],
    openat2: [BigInt.asUintN(64, -100n), 0n, 0n, 0n, 0n, 0n],
  },
  handle(n, ctx): Promise<ShimResult> {
    return handleOpen(n, ctx.profile, ctx.caller, (line) => process.stderr.write(`vjail: ${line}\n`));
  },
};
