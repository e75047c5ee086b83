import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import * as E from '../src/errno.js';
import type { Profile } from '../src/profile/types.js';
import { asCaller } from './identity.js';
import { presentedHostname, presentedSysctls } from './kernel-files.js';
import type { CallerAccess, Shim, ShimResult } from './types.js';

/*
 * _sysctl(2), the binary sysctl interface removed from Linux 5.5, emulated
 * as Linux 4.19 did it (kernel/sysctl_binary.c): the binary name is mapped
 * to a /proc/sys path, the file is read or written, and the text converted.
 */

const CTL_MAXNAME = 10;

type Kind = 'str' | 'int' | 'ulong';
interface Entry {
  name: string;
  kind?: Kind;
  child?: Table;
}
type Table = ReadonlyMap<number, Entry>;

const t = (entries: [number, Entry][]): Table => new Map(entries);
const str = (name: string): Entry => ({ name, kind: 'str' });
const int = (name: string): Entry => ({ name, kind: 'int' });
const ulong = (name: string): Entry => ({ name, kind: 'ulong' });

/** The binary names vjail maps: a documented subset of 4.19's table. */
export const SYSCTL_TABLE: Table = t([
  [
    1, // CTL_KERN
    {
      name: 'kernel',
      child: t([
        [1, str('ostype')],
        [2, str('osrelease')],
        [4, str('version')],
        [7, str('hostname')],
        [8, str('domainname')],
        [15, int('panic')],
        [23, int('printk')],
        [34, ulong('shmmax')],
        [35, int('msgmax')],
        [36, int('msgmnb')],
        [39, int('threads-max')],
        [40, { name: 'random', child: t([[1, int('poolsize')], [2, int('entropy_avail')]]) }],
        [41, ulong('shmall')],
        [42, int('msgmni')],
        [43, int('sem')],
        [45, int('shmmni')],
        [46, int('overflowuid')],
        [47, int('overflowgid')],
        [52, int('core_uses_pid')],
        [53, ulong('tainted')],
        [55, int('pid_max')],
        [56, str('core_pattern')],
        [57, int('panic_on_oops')],
        [63, int('ngroups_max')],
        [68, int('randomize_va_space')],
      ]),
    },
  ],
  [
    2, // CTL_VM
    {
      name: 'vm',
      child: t([
        [5, int('overcommit_memory')],
        [10, int('page-cluster')],
        [11, int('dirty_background_ratio')],
        [12, int('dirty_ratio')],
        [16, int('overcommit_ratio')],
        [19, int('swappiness')],
        [21, int('min_free_kbytes')],
        [22, int('max_map_count')],
      ]),
    },
  ],
  [
    3, // CTL_NET
    {
      name: 'net',
      child: t([
        [1, { name: 'core', child: t([[1, int('wmem_max')], [2, int('rmem_max')], [18, int('somaxconn')]]) }],
        [5, { name: 'ipv4', child: t([[8, int('ip_forward')], [49, int('tcp_fin_timeout')], [56, int('ip_local_port_range')]]) }],
      ]),
    },
  ],
  [5, { name: 'fs', child: t([[6, int('file-nr')], [7, ulong('file-max')]]) }], // CTL_FS
]);

/** Every mapped name as "1.2 kernel.osrelease (str)", for docs. */
export function sysctlNames(table: Table = SYSCTL_TABLE, prefix: number[] = [], path: string[] = []): string[] {
  const out: string[] = [];
  for (const [nr, e] of [...table].sort((a, b) => a[0] - b[0])) {
    if (e.child) out.push(...sysctlNames(e.child, [...prefix, nr], [...path, e.name]));
    else out.push(`${[...prefix, nr].join('.')} ${[...path, e.name].join('.')} (${e.kind})`);
  }
  return out;
}

/** get_sysctl: walk the name; a directory with nothing left, or an unknown number, is ENOTDIR. Extra components after a leaf are ignored. */
function lookup(name: number[]): { path: string; kind: Kind } | undefined {
  let table: Table = SYSCTL_TABLE;
  const parts: string[] = [];
  for (const n of name) {
    const e = table.get(n);
    if (!e) return undefined;
    parts.push(e.name);
    if (!e.child) return { path: parts.join('/'), kind: e.kind! };
    table = e.child;
  }
  return undefined;
}

class Fault extends Error {}

interface Mem {
  read(addr: bigint, len: number): Buffer;
  write(addr: bigint, data: Uint8Array): void;
}

function guarded(caller: CallerAccess): Mem {
  const wrap = <T>(f: () => T): T => {
    try {
      return f();
    } catch (e) {
      if ((e as { errno?: number }).errno === 3) throw e; // the caller is gone
      throw new Fault();
    }
  };
  return { read: (a, l) => wrap(() => caller.read(a, l)), write: (a, d) => wrap(() => caller.write(a, d)) };
}

/** The file's text: the profile's for the names it presents, else /proc/sys. */
function readValue(path: string, profile: Profile, pid: number): Buffer {
  const presented = presentedSysctls(profile).get(path) ?? (path === 'kernel/hostname' ? presentedHostname(profile) : undefined);
  if (presented !== undefined) return Buffer.from(`${presented}\n`);
  const fd = withCallerRights(pid, () => openSync(`/proc/sys/${path}`, 'r'));
  try {
    const buf = Buffer.alloc(4096);
    const n = readSync(fd, buf, 0, buf.length - 1, 0);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

function writeValue(path: string, data: Buffer): void {
  const fd = openSync(`/proc/sys/${path}`, 'w');
  try {
    writeSync(fd, data, 0, data.length, 0);
  } finally {
    closeSync(fd);
  }
}

/** proc_dostring as bin_string saw it: up to `len` bytes and a newline if room; the newline becomes a NUL. */
function readString(mem: Mem, text: Buffer, oldval: bigint, oldlen: number): number {
  const value = text[text.length - 1] === 0x0a ? text.subarray(0, -1) : text;
  let out = Buffer.concat([value, Buffer.from('\n')]);
  if (out.length > oldlen) out = out.subarray(0, oldlen);
  mem.write(oldval, out);
  if (out[out.length - 1] === 0x0a) {
    mem.write(oldval + BigInt(out.length - 1), Buffer.from([0]));
    return out.length - 1;
  }
  return out.length;
}

/** bin_intvec / bin_ulongvec: parse decimal numbers into an array of `size`-byte unsigned values. */
function readVector(mem: Mem, text: Buffer, oldval: bigint, oldlen: number, size: 4 | 8): number {
  const s = text.toString('latin1');
  let i = 0;
  let copied = 0;
  const count = Math.floor(oldlen / size);
  for (let k = 0; k < count; k++) {
    const m = /^\d*/.exec(s.slice(i))![0];
    i += m.length;
    while (i < s.length && /\s/.test(s[i])) i++;
    const v = m ? BigInt(m) : 0n;
    const b = Buffer.alloc(size);
    if (size === 4) b.writeUInt32LE(Number(BigInt.asUintN(32, v)));
    else b.writeBigUInt64LE(BigInt.asUintN(64, v));
    mem.write(oldval + BigInt(k * size), b);
    copied += size;
    if (!/\d/.test(s[i] ?? '')) break;
  }
  return copied;
}

function newText(mem: Mem, kind: Kind, newval: bigint, newlen: number): Buffer {
  if (kind === 'str') return mem.read(newval, newlen);
  const size = kind === 'int' ? 4 : 8;
  const words: string[] = [];
  for (let k = 0; k < Math.floor(newlen / size); k++) {
    const b = mem.read(newval + BigInt(k * size), size);
    words.push(String(size === 4 ? b.readUInt32LE(0) : b.readBigUInt64LE(0)));
  }
  return Buffer.from(words.map((w) => `${w}\t`).join(''));
}

const errnoOf = E.errnoOfError;

/** `fn` (a /proc/sys access) with the caller's rights, as 4.19's binary sysctl opened the file; EACCES where vjail cannot take them. */
function withCallerRights<T>(pid: number, fn: () => T): T {
  const r = asCaller(pid, fn);
  if (r === 'cannot') throw Object.assign(new Error('cannot take the caller\'s identity'), { code: 'EACCES' });
  return r;
}

/** do_sysctl + binary_sysctl + the converter; returns bytes copied or -errno. */
function binarySysctl(pid: number, mem: Mem, profile: Profile, nameAddr: bigint, nlen: number, oldval: bigint, oldlen: bigint, newval: bigint, newlen: bigint): number {
  if (nlen < 0 || nlen > CTL_MAXNAME) return -E.ENOTDIR;
  const name: number[] = [];
  for (let i = 0; i < nlen; i++) name.push(mem.read(nameAddr + BigInt(4 * i), 4).readInt32LE(0));
  const entry = lookup(name);
  if (!entry) return -E.ENOTDIR;
  const reading = oldval !== 0n && oldlen !== 0n;
  const writing = newval !== 0n && newlen !== 0n;
  if (!reading && !writing) return 0;
  const presentedReadOnly = ['kernel/ostype', 'kernel/osrelease', 'kernel/version'].includes(entry.path);
  // Those files are 0444 and the kernel refuses to open them for writing, even for root.
  if (writing && presentedReadOnly) return -E.EACCES;
  let text: Buffer | undefined;
  try {
    if (reading) text = readValue(entry.path, profile, pid);
  } catch (e) {
    return -errnoOf(e);
  }
  let copied = 0;
  if (reading) {
    const len = Number(oldlen > 0x7fffffffn ? 0x7fffffffn : oldlen);
    copied = entry.kind === 'str' ? readString(mem, text!, oldval, len) : readVector(mem, text!, oldval, len, entry.kind === 'int' ? 4 : 8);
  }
  if (writing) {
    const data = newText(mem, entry.kind, newval, Number(newlen > 4096n ? 4096n : newlen));
    try {
      withCallerRights(pid, () => writeValue(entry.path, data));
    } catch (e) {
      return -errnoOf(e);
    }
  }
  return copied;
}

function handleSysctl(n: { pid: number; arch: string; args: readonly bigint[] }, profile: Profile, caller: CallerAccess): ShimResult {
  const mem = guarded(caller);
  const compat = n.arch === 'i386';
  const ptr = compat ? 4 : 8;
  try {
    // struct __sysctl_args (80 bytes) or the compat one (40 bytes), with its unused tail.
    const args = mem.read(compat ? BigInt.asUintN(32, n.args[0]) : n.args[0], compat ? 40 : 80);
    const word = (off: number): bigint => (compat ? BigInt(args.readUInt32LE(off)) : args.readBigUInt64LE(off));
    const nameAddr = word(0);
    const nlen = args.readInt32LE(ptr);
    const oldval = word(compat ? 8 : 16);
    const oldlenp = word(compat ? 12 : 24);
    const newval = word(compat ? 16 : 32);
    const newlen = word(compat ? 20 : 40);
    if (oldval !== 0n && oldlenp === 0n) return { kind: 'errno', errno: E.EFAULT };
    let oldlen = 0n;
    if (oldlenp !== 0n) {
      const b = mem.read(oldlenp, ptr);
      oldlen = compat ? BigInt(b.readUInt32LE(0)) : b.readBigUInt64LE(0);
    }
    const result = binarySysctl(n.pid, mem, profile, nameAddr, nlen, oldval, oldlen, newval, newlen);
    if (result >= 0) oldlen = BigInt(result);
    if (oldlenp !== 0n) {
      const b = Buffer.alloc(ptr);
      if (compat) b.writeUInt32LE(Number(BigInt.asUintN(32, oldlen)));
      else b.writeBigUInt64LE(oldlen);
      mem.write(oldlenp, b);
    }
    return result < 0 ? { kind: 'errno', errno: -result } : { kind: 'value', value: 0n };
  } catch (e) {
    if (e instanceof Fault) return { kind: 'errno', errno: E.EFAULT };
    throw e;
  }
}

export const sysctlShim: Shim = {
  name: '_sysctl',
  syscalls: ['_sysctl'],
  doc:
    '_sysctl(2) (removed from Linux 5.5) for profiles whose kernel has it, on hosts that lack it: the binary name is ' +
    'mapped to its /proc/sys file as Linux 4.19 did, which is read or written and converted (strings with the trailing ' +
    'newline turned into a NUL, or truncated without one when oldval is short; integer vectors as 4-byte, unsigned long ' +
    'ones as 8-byte values, also for i386 callers). kernel.ostype, osrelease, version, domainname (and hostname when ' +
    'the profile sets a nodename) come from the profile, like uname(2) and /proc; writing ostype, osrelease or version ' +
    'fails with EACCES as on the kernel. Errors as on 4.19: an unknown name, a directory, or nlen outside 0..10 give ' +
    'ENOTDIR; a bad args, name, oldval, oldlenp or newval pointer gives EFAULT (oldval without oldlenp too); oldlenp ' +
    'receives the copied length. Other values are read from the supervisor\'s /proc/sys (its namespaces), opened with ' +
    'the caller\'s fs ids, groups and effective capabilities (a caller as nobody is refused a write with EACCES, as ' +
    'from 4.19, where the kernel opened the file as the caller; EACCES too where vjail cannot take the caller\'s ' +
    'identity). Mapped names: CTL_KERN (ostype, osrelease, version, hostname, ' +
    'domainname, panic, printk, shmmax, msgmax, msgmnb, threads-max, random.{poolsize,entropy_avail}, shmall, msgmni, ' +
    'sem, shmmni, overflowuid, overflowgid, core_uses_pid, tainted, pid_max, core_pattern, panic_on_oops, ngroups_max, ' +
    'randomize_va_space), CTL_VM (overcommit_memory, page-cluster, dirty_background_ratio, dirty_ratio, ' +
    'overcommit_ratio, swappiness, min_free_kbytes, max_map_count), CTL_NET (core.{wmem_max,rmem_max,somaxconn}, ' +
    'ipv4.{ip_forward,tcp_fin_timeout,ip_local_port_range}), CTL_FS (file-nr, file-max); other names get ENOTDIR.',
  probeArgs: {
    // A NULL args pointer: EFAULT from a kernel that has the call, ENOSYS from one without it.
    _sysctl: [0n, 0n, 0n, 0n, 0n, 0n],
  },
  handle(n, ctx): ShimResult {
    return handleSysctl(n, ctx.profile, ctx.caller);
  },
};
