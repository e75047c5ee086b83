import { closeSync, constants as fsc, lstatSync, openSync, readFileSync, readlinkSync, statfsSync, statSync } from 'node:fs';
import * as E from '../src/errno.js';
import { errnoOfError as errnoOf } from '../src/errno.js';
import type { Profile } from '../src/profile/types.js';
import { memfdSealed } from '../src/features.js';
import { errnoOf as rawErrno, passThrough, runInCaller, type InCallerSession } from '../src/supervisor/incaller.js';
import { readCString } from './host-calls.js';
import { callerState, type CallerState, identityNative, ownIdentity, sameIdentity } from './identity.js';
import { presentedSysctls, procVersion, READ_ONLY_SYSCTLS } from './kernel-files.js';
import type { CallerAccess, Notification, Shim, ShimContext, ShimResult } from './types.js';

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

const SLASH = 0x2f;

/** A file descriptor error as a syscall result. */
function fail(errno: number): ShimResult {
  return { kind: 'errno', errno };
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

function isProc(path: Buffer | string): boolean {
  try {
    return statfsSync(path).type === PROC_SUPER_MAGIC;
  } catch {
    return false;
  }
}

/** Set by resolveFor: whether the last component it looked at was a regular file or a directory (an open that cannot block). */
let lastWasPlain = false;
/**
 * Set by resolveFor: whether the path went through the caller's own
 * /proc/PID directory, where the kernel lets a process into its own entries
 * (fd, mem, environ...) whatever its credentials; vjail wearing them is not
 * that process.
 */
let viaOwnProc = false;

/**
 * Where a lookup of `path` starts: the components of the caller's cwd or
 * dirfd below its root, or (for a deleted directory or a non-path object) a
 * finished path to hand to the kernel, or an errno. Read with vjail's own
 * rights: the caller needs none to use its own cwd and fds.
 */
function startOf(pid: number, dirfd: number, path: Buffer): Buffer[] | Buffer | number {
  if (path[0] === SLASH) return [];
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
  return split(target);
}

/**
 * Resolve `path` as the caller would, in the supervisor's view of its files
 * (below `root`, the caller's root as /proc/PID/root or an fd of it, so the
 * caller's root and mount namespace apply), starting at the components
 * `start`. Ordinary symlinks are followed here, so that a "self" or
 * "thread-self" reached at the top of a procfs is replaced by the caller's
 * ids (opened by the supervisor it would name the supervisor). At a procfs
 * magic link (/proc/PID/fd/N, cwd, root, exe...) the rest is left to the
 * kernel, which follows those the same for any opener. Errors are left to
 * the kernel too: the returned path, opened, fails as the caller's would.
 * Run while wearing the caller's identity, so every lookup here is one the
 * caller may make.
 */
function resolveFor(root: string, st: CallerState, start: Buffer[], path: Buffer, followLast: boolean): Buffer | number {
  lastWasPlain = false;
  viaOwnProc = false;
  let stack = start;
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
    if ((isName(c, 'self') || isName(c, 'thread-self') || isName(c, st.nsTgid)) && isProcRoot(join(root, stack))) {
      viaOwnProc = true;
      if (isName(c, 'self') || isName(c, st.nsTgid)) stack.push(Buffer.from(st.nsTgid));
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

/**
 * The profile's content for the open file that `fdLink` (/proc/PID/fd/N)
 * names, if it is one the profile presents; and its sysctl name.
 */
function presented(fdLink: string, profile: Profile): { content: string; key: string } | undefined {
  const link = readlinkSync(fdLink);
  const tail = /\/([a-z]+)$/.exec(link)?.[1];
  if (!tail || !['version', 'ostype', 'osrelease', 'domainname', 'hostname'].includes(tail)) return undefined;
  if (!isProc(fdLink)) return undefined;
  const sys = /\/sys\/(kernel\/[a-z]+)$/.exec(link)?.[1];
  if (sys) {
    const v = presentedSysctls(profile).get(sys);
    return v === undefined ? undefined : { content: `${v}\n`, key: sys };
  }
  procVersionIno ??= statSync('/proc/version').ino;
  if (tail === 'version' && statSync(fdLink).ino === procVersionIno) return { content: procVersion(profile), key: 'version' };
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

interface OpenRequest {
  dirfd: number;
  pathAddr: bigint;
  flags: number;
  mode: number;
  /** openat2's RESOLVE_* flags (0 for open and openat). */
  resolve: bigint;
}

/** The arguments of open/openat, or of openat2 with its struct open_how read and checked as the kernel does. */
function request(n: Notification, caller: CallerAccess): OpenRequest | ShimResult {
  const a = n.args;
  const int = (v: bigint): number => Number(BigInt.asIntN(32, v));
  const uint = (v: bigint): number => Number(BigInt.asUintN(32, v));
  if (n.name === 'open') return { dirfd: AT_FDCWD, pathAddr: a[0], flags: uint(a[1]), mode: uint(a[2]) & 0o7777, resolve: 0n };
  if (n.name === 'openat') return { dirfd: int(a[0]), pathAddr: a[1], flags: uint(a[2]), mode: uint(a[3]) & 0o7777, resolve: 0n };
  const size = n.arch === 'i386' ? BigInt.asUintN(32, a[3]) : a[3];
  if (size < BigInt(OPEN_HOW_SIZE)) return fail(E.EINVAL);
  if (size > 4096n) return fail(E.E2BIG);
  let how: Buffer;
  try {
    how = caller.read(a[2], Number(size));
  } catch (e) {
    if ((e as { errno?: number }).errno === E.ESRCH) throw e;
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
  return { dirfd: int(a[0]), pathAddr: a[1], flags: f, mode: Number(mode), resolve };
}

const S_IFMT = 0o170000;
const S_IFCHR = 0o020000;
/** Major number of the memory devices (/dev/null, zero, full, random, urandom): their open never blocks. */
const MEM_MAJOR = 1;

/**
 * May opening `target` block, or mean something else when vjail opens it?
 * A FIFO waits for its other end, a terminal for its carrier, /dev/tty is
 * the opener's controlling terminal: those are opened in the caller itself.
 */
function needsCaller(target: Buffer): boolean {
  let s;
  try {
    s = statSync(target);
  } catch {
    return false; // the open fails the same way
  }
  if (s.isFile() || s.isDirectory()) return false;
  if ((s.mode & S_IFMT) === S_IFCHR) return s.rdev >> 8 !== MEM_MAJOR;
  return true;
}

/** Why the supervisor could not open for the caller: it must run in the caller itself. */
const IN_CALLER = Symbol('in-caller');

/**
 * The open, made by the supervisor on the main thread while it wears the
 * caller's identity (fs ids, groups, effective capabilities, umask): every
 * lookup of the walk and the open itself are checked against the caller's
 * rights. Synchronous, so nothing else runs while the identity is worn.
 */
function openAsCaller(pid: number, st: CallerState, req: OpenRequest, path: Buffer): number | typeof IN_CALLER {
  const start = startOf(pid, req.dirfd, path);
  if (typeof start === 'number') return -start;
  const wear = !sameIdentity(st, ownIdentity());
  const creating = (req.flags & O_CREAT) !== 0 || (req.flags & O_TMPFILE) === O_TMPFILE;
  // The caller's root, held by an fd of ours: with another identity, /proc/PID/root would be checked against it.
  let rootFd = -1;
  let root = `/proc/${pid}/root`;
  if (wear) {
    try {
      rootFd = openSync(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    } catch (e) {
      return -errnoOf(e);
    }
    root = `/proc/self/fd/${rootFd}`;
  }
  const nat = identityNative();
  try {
    if (wear || creating) {
      const err = nat.shimIdentityEnter(st.euid, st.egid, st.fsuid, st.fsgid, st.groups, st.capEff, st.umask);
      if (err) return IN_CALLER; // vjail cannot take this identity (it lacks a capability the caller has)
    }
    try {
      const followLast = (req.flags & O_NOFOLLOW) === 0 && !((req.flags & O_CREAT) !== 0 && (req.flags & O_EXCL) !== 0);
      const target = Buffer.isBuffer(start) ? start : resolveFor(root, st, start, path, followLast);
      if (typeof target === 'number') return -target;
      if (wear && viaOwnProc) return IN_CALLER;
      if (!creating && !lastWasPlain && needsCaller(target)) return IN_CALLER;
      try {
        return openSync(target, req.flags, req.mode);
      } catch (e) {
        return -errnoOf(e);
      }
    } finally {
      nat.shimIdentityLeave();
    }
  } finally {
    if (rootFd >= 0) closeSync(rootFd);
  }
}

/** Run the inject `name(args)` in the caller and throw unless it succeeded. */
async function must(s: InCallerSession, name: string, args: bigint[]): Promise<bigint> {
  const r = await s.syscall(name, args);
  if (rawErrno(r)) throw new Error(`${name} in the caller failed: errno ${rawErrno(r)}`);
  return r;
}

const MFD_CLOEXEC = 1n;
const MFD_ALLOW_SEALING = 2n;
const F_ADD_SEALS = 1033n;
/** F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE. */
const ALL_SEALS = 0xfn;

/**
 * Put the profile's content in place of the caller's fd `fd` (a presented
 * file it opened itself): a sealed memfd made in the caller, reopened
 * read-only (its own offset) through /proc/thread-self where the caller has
 * a procfs, then moved onto `fd`.
 */
async function replaceInCaller(s: InCallerSession, fd: bigint, content: string, cloexec: boolean): Promise<void> {
  const m = await must(s, 'memfd_create', [s.push(Buffer.from('vjail\0')), MFD_CLOEXEC | MFD_ALLOW_SEALING]);
  const data = Buffer.from(content);
  await must(s, 'write', [m, s.push(data), BigInt(data.length)]);
  await must(s, 'fcntl', [m, F_ADD_SEALS, ALL_SEALS]);
  let src = m;
  const ro = await s.syscall('openat', [BigInt.asUintN(64, BigInt(AT_FDCWD)), s.push(Buffer.from(`/proc/thread-self/fd/${m}\0`)), BigInt(O_RDONLY | O_CLOEXEC)]);
  if (!rawErrno(ro)) src = ro;
  else await must(s, 'lseek', [m, 0n, 0n]);
  await must(s, 'dup3', [src, fd, cloexec ? BigInt(O_CLOEXEC) : 0n]);
  if (src !== m) await s.syscall('close', [src]);
  await s.syscall('close', [m]);
}

/**
 * The open made by the caller itself (docs/IN-CALLER.md), from the copies of
 * the path and open_how that were read: O_PATH through openat2 (an O_PATH
 * file cannot be installed with ADDFD), RESOLVE_* restrictions (the kernel's
 * walk applies them exactly), opens that may block (interruptible as the
 * caller's own), and callers whose identity vjail cannot take. What the
 * caller got is checked afterwards, as for any open: a presented file is
 * replaced by the profile's content.
 */
function openInCaller(n: Notification, ctx: ShimContext, req: OpenRequest, path: Buffer): Promise<ShimResult> {
  return runInCaller(n, ctx, async (s) => {
    const p = s.push(Buffer.concat([path, Buffer.from([0])]));
    let raw: bigint;
    if (req.resolve !== 0n || n.name === 'openat2') {
      const how = Buffer.alloc(OPEN_HOW_SIZE);
      how.writeBigUInt64LE(BigInt(req.flags), 0);
      how.writeBigUInt64LE(BigInt(req.mode), 8);
      how.writeBigUInt64LE(req.resolve, 16);
      raw = await s.syscall('openat2', [BigInt.asUintN(64, BigInt(req.dirfd)), p, s.push(how), BigInt(OPEN_HOW_SIZE)]);
    } else {
      raw = await s.syscall('openat', [BigInt.asUintN(64, BigInt(req.dirfd)), p, BigInt(req.flags), BigInt(req.mode)]);
    }
    if (rawErrno(raw) || (req.flags & O_PATH) !== 0) return passThrough(raw);
    const shown = presented(`/proc/${n.pid}/fd/${raw}`, ctx.profile);
    if (!shown) return { kind: 'return', value: raw };
    if ((req.flags & O_ACCMODE) !== O_RDONLY) {
      if (shown.key !== 'version' && !READ_ONLY_SYSCTLS.has(shown.key)) return { kind: 'return', value: raw };
      await s.syscall('close', [raw]);
      return { kind: 'return', value: -BigInt(E.EACCES) };
    }
    await replaceInCaller(s, raw, shown.content, (req.flags & O_CLOEXEC) !== 0);
    return { kind: 'return', value: raw };
  });
}

function handleOpen(n: Notification, ctx: ShimContext): ShimResult | Promise<ShimResult> {
  const { profile, caller } = ctx;
  const req = request(n, caller);
  if ('kind' in req) return req;
  // An O_PATH file gives no access to content (reading it, or reopening it
  // through /proc/self/fd, comes back here): the kernel may open it as made.
  // Only for open and openat, whose flags are in registers the caller cannot change.
  if ((req.flags & O_PATH) !== 0 && n.name !== 'openat2') return { kind: 'continue' };
  const path = readPath(caller, req.pathAddr);
  if (typeof path === 'number') return fail(path);
  if (path.length === 0) return fail(E.ENOENT);
  if (req.dirfd < 0 && req.dirfd !== AT_FDCWD && path[0] !== SLASH) return fail(E.EBADF);
  if (req.resolve !== 0n || (req.flags & O_PATH) !== 0) return openInCaller(n, ctx, req, path);

  const st = callerState(n.pid);
  const fd = openAsCaller(n.pid, st, req, path);
  if (fd === IN_CALLER) return openInCaller(n, ctx, req, path);
  if (fd < 0) return fail(-fd);
  const cloexec = (req.flags & O_CLOEXEC) !== 0;
  try {
    const p = presented(`/proc/self/fd/${fd}`, profile);
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
    'every open, openat and openat2 under a non-host profile is answered by the supervisor, so that /proc/version and ' +
    '/proc/sys/kernel/{ostype,osrelease,version,domainname} (and hostname when the profile sets a nodename) show the ' +
    'profile through any path that leads to them (symlinks, "..", relative to a directory fd, /proc/self/root/..., ' +
    '/proc/self/fd/N), while nothing is decided from caller memory that the kernel would read again. Usually the ' +
    'supervisor opens the file and installs it in the caller (SECCOMP_IOCTL_NOTIF_ADDFD): the path is resolved as the ' +
    'caller would (through /proc/PID/root and /proc/PID/cwd, with "self" and "thread-self" in procfs meaning the ' +
    'caller), and the walk and the open run wearing the caller\'s effective and fs uid and gid, supplementary groups, ' +
    'effective capabilities and umask, so permissions and their errors (EACCES, EPERM, EROFS...) are the kernel\'s for ' +
    'that caller; EMFILE comes from the caller\'s own fd table and RLIMIT_NOFILE at the install. open and openat with ' +
    'O_PATH are run by the kernel as made (CONTINUE: their flags are in registers, and an O_PATH file gives no content). ' +
    'The caller opens the file itself (IN-CALLER.md), from copies of the path and open_how, for openat2 with O_PATH or ' +
    'RESOLVE_* flags (the kernel\'s own walk applies NO_XDEV, NO_MAGICLINKS, NO_SYMLINKS, BENEATH, IN_ROOT and CACHED), ' +
    'for FIFOs and devices other than the memory devices (the open blocks and is interrupted as the caller\'s own; ' +
    '/dev/tty is the caller\'s terminal), for paths through its own /proc/PID when it runs as another user than vjail ' +
    '(procfs lets a process into its own entries), and when vjail cannot take its identity; what it opened is then ' +
    'checked like the supervisor\'s own opens. A presented file is a sealed, read-only memfd with the profile\'s ' +
    'content (a new file offset per open); opening one for writing fails with EACCES, except hostname and domainname, ' +
    'which stay the kernel\'s files. Limits: the caller\'s LSM context is not worn; with a full fd table the kernel ' +
    'reports EMFILE before a lookup error, the shim after it; opens are answered one at a time. A plain open or openat ' +
    '(x86_64) of a regular file or directory, from a base outside procfs and sysfs, within one mount, by a caller whose ' +
    'root is vjail\'s, is answered the same way by the native receiving thread without JavaScript (native/openfast.c, ' +
    'which keeps each thread\'s identity from one open to the next while the calls that change it are noted); ' +
    'the rest by the supervisor\'s main thread as above. The host profile does not intercept opens at all.',
  presentsProfile(_syscall: string, profile: Profile): boolean {
    return !profile.isHost;
  },
  probeArgs: {
    // A NULL path: EFAULT from a kernel that has the call.
    open: [0n, 0n, 0n, 0n, 0n, 0n],
    openat: [BigInt.asUintN(64, -100n), 0n, 0n, 0n, 0n, 0n],
    openat2: [BigInt.asUintN(64, -100n), 0n, 0n, 0n, 0n, 0n],
  },
  handle(n, ctx): ShimResult | Promise<ShimResult> {
    return handleOpen(n, ctx);
  },
};
