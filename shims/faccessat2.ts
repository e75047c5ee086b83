import { readFileSync } from 'node:fs';
import { errnoOf, runInCaller } from '../src/supervisor/incaller.js';
import { AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, atTarget, closeAtTarget } from './host-calls.js';
import type { Shim, ShimResult } from './types.js';
import { EACCES, EFAULT, EINVAL, ENOSYS, EROFS } from '../src/errno.js';

const AT_EACCESS = 0x200n;
const S_IRWXO = 7n;
const W_OK = 2n;
const X_OK = 1n;
const STAT_SIZE = 144;
const STATFS_SIZE = 120;
/** Offset of f_flags in the x86_64 struct statfs. */
const STATFS_FLAGS = 80;
const ST_RDONLY = 1n;
const CAP_DAC_OVERRIDE = 1n;
const CAP_DAC_READ_SEARCH = 2n;

/** A caller thread's ids and capabilities, from /proc/TID/status. */
export interface Creds {
  ruid: number;
  rgid: number;
  fsuid: number;
  fsgid: number;
  groups: number[];
  capEff: bigint;
  capPrm: bigint;
}

export function creds(tid: number): Creds {
  const status = readFileSync(`/proc/${tid}/status`, 'latin1');
  const field = (k: string): string => new RegExp(`^${k}:\\s*(.*)$`, 'm').exec(status)?.[1].trim() ?? '';
  const ids = (k: string): number[] => field(k).split(/\s+/).filter(Boolean).map(Number);
  const [ruid, , , fsuid] = ids('Uid');
  const [rgid, , , fsgid] = ids('Gid');
  return { ruid, rgid, fsuid, fsgid, groups: ids('Groups'), capEff: BigInt(`0x${field('CapEff')}`), capPrm: BigInt(`0x${field('CapPrm')}`) };
}

/**
 * Would access(2), which checks with the real ids (and, for a real uid 0, the
 * permitted capabilities, else none), decide as AT_EACCESS does with the
 * fs ids and effective capabilities?
 */
function accessMatchesEaccess(c: Creds): boolean {
  if (c.ruid !== c.fsuid || c.rgid !== c.fsgid) return false;
  return c.ruid === 0 ? c.capEff === c.capPrm : c.capEff === 0n;
}

/** The classic permission check on mode bits, with the fs ids and effective capabilities. */
function modeBitsAllow(c: Creds, st: Buffer, want: bigint): boolean {
  const mode = BigInt(st.readUInt32LE(24));
  const uid = st.readUInt32LE(28);
  const gid = st.readUInt32LE(32);
  const isDir = (mode & 0o170000n) === 0o040000n;
  let bits: bigint;
  if (c.fsuid === uid) bits = (mode >> 6n) & 7n;
  else if (c.fsgid === gid || c.groups.includes(gid)) bits = (mode >> 3n) & 7n;
  else bits = mode & 7n;
  if ((bits & want) === want) return true;
  const cap = (bit: bigint): boolean => ((c.capEff >> bit) & 1n) === 1n;
  if (cap(CAP_DAC_OVERRIDE)) {
    // Execute needs one execute bit somewhere, except on directories.
    if (!(want & X_OK) || isDir || (mode & 0o111n) !== 0n) return true;
  }
  if (cap(CAP_DAC_READ_SEARCH) && !(want & W_OK)) {
    if (isDir || !(want & X_OK)) return true;
  }
  return false;
}

export const faccessat2Shim: Shim = {
  name: 'faccessat2',
  syscalls: ['faccessat2'],
  doc:
    "faccessat2 (Linux 5.8) runs in the caller's own context (see IN-CALLER.md). A mode other than " +
    'F_OK or a combination of R_OK, W_OK and X_OK is EINVAL, then flags other than AT_EACCESS, ' +
    'AT_SYMLINK_NOFOLLOW and AT_EMPTY_PATH. With AT_SYMLINK_NOFOLLOW, or AT_EMPTY_PATH and an empty ' +
    'path, the object is opened O_PATH|O_NOFOLLOW (or dirfd itself is used; EBADF if it is not open, ' +
    'the cwd for AT_FDCWD) and checked through /proc/thread-self/fd/N, which reaches a symlink itself; ' +
    'otherwise the call is faccessat(2). Without AT_EACCESS that is exact. AT_EACCESS checks with the ' +
    'fs ids and effective capabilities where faccessat(2) uses the real ids: when the caller\'s real ' +
    'and fs ids are equal and its capabilities are those faccessat(2) would use (a real uid 0 with ' +
    'effective = permitted, or another uid with no effective capabilities), which is the usual case, ' +
    'faccessat(2) gives the same answer. Otherwise the answer is computed from the file\'s mode bits, ' +
    'owner and group against the caller\'s fs uid, fs gid, supplementary groups, CAP_DAC_OVERRIDE and ' +
    'CAP_DAC_READ_SEARCH (from /proc/TID/status), with EROFS for W_OK on a read-only mount: ACLs, LSMs ' +
    'and immutable files are not consulted in that case, nor file systems with permission checks of their ' +
    'own (procfs sysctls refuse writes even to CAP_DAC_OVERRIDE; network file systems). The caller must see a procfs at /proc for ' +
    'the AT_SYMLINK_NOFOLLOW and empty-path forms. x86_64 callers only: an i386 caller gets ENOSYS, as ' +
    'from a kernel before 5.8.',
  handle(n, ctx): ShimResult | Promise<ShimResult> {
    if (n.arch !== 'x86_64') return { kind: 'errno', errno: ENOSYS };
    const [dfd, path, rawMode, rawFlags] = n.args;
    const mode = rawMode & 0xffffffffn;
    const flags = rawFlags & 0xffffffffn;
    if (mode & ~S_IRWXO) return { kind: 'errno', errno: EINVAL };
    if (flags & ~(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH)) return { kind: 'errno', errno: EINVAL };
    return runInCaller(n, ctx, async (s) => {
      let empty = false;
      if (flags & AT_EMPTY_PATH) {
        // Only the form of the call depends on this byte; the injected calls read the path themselves.
        let first: Buffer;
        try {
          first = s.read(path, 1);
        } catch {
          return { kind: 'return', value: -BigInt(EFAULT) };
        }
        empty = first[0] === 0;
      }
      const c = flags & AT_EACCESS ? creds(n.pid) : undefined;
      const exact = !c || accessMatchesEaccess(c);
      if (exact && !empty && !(flags & AT_SYMLINK_NOFOLLOW)) return { kind: 'return', value: await s.syscall('faccessat', [dfd, path, mode]) };
      const t = await atTarget(s, dfd, path, empty, (flags & AT_SYMLINK_NOFOLLOW) !== 0n);
      if (typeof t === 'bigint') return { kind: 'return', value: t };
      try {
        if (exact) return { kind: 'return', value: await s.syscall('faccessat', [AT_FDCWD, t.path, mode]) };
        const st = s.push(Buffer.alloc(STAT_SIZE));
        const r = await s.syscall('fstat', [t.fd, st]);
        if (errnoOf(r)) return { kind: 'return', value: r };
        if (mode === 0n) return { kind: 'return', value: 0n };
        const stat = s.read(st, STAT_SIZE);
        if (!modeBitsAllow(c!, stat, mode)) return { kind: 'return', value: -BigInt(EACCES) };
        const type = stat.readUInt32LE(24) & 0o170000;
        if (mode & W_OK && (type === 0o100000 || type === 0o040000 || type === 0o120000)) {
          const sf = s.push(Buffer.alloc(STATFS_SIZE));
          const f = await s.syscall('fstatfs', [t.fd, sf]);
          if (!errnoOf(f) && s.read(sf, STATFS_SIZE).readBigUInt64LE(STATFS_FLAGS) & ST_RDONLY) return { kind: 'return', value: -BigInt(EROFS) };
        }
        return { kind: 'return', value: 0n };
      } finally {
        await closeAtTarget(s, t);
      }
    });
  },
};
