/**
 * The container's setup plan: what native/vjail-oci-setup.c does before it
 * execs vjail-init, as one directive a line, tab-separated, each field
 * %XX-escaped. Everything the C side needs is decided here (mount flags,
 * capability masks, default devices), so it only performs.
 */
import type { IdView } from '../userns.js';
import { isAbsolute, resolve } from 'node:path';
import { baselineEnv } from '../checkpoint/cpu-baseline.js';
import type { OciConfig, OciProcess } from './config.js';
import { OciError } from './errors.js';

const MS = {
  RDONLY: 1, NOSUID: 2, NODEV: 4, NOEXEC: 8, SYNCHRONOUS: 16, REMOUNT: 32, MANDLOCK: 64, DIRSYNC: 128,
  NOSYMFOLLOW: 256, NOATIME: 1024, NODIRATIME: 2048, BIND: 4096, REC: 16384, SILENT: 32768,
  UNBINDABLE: 1 << 17, PRIVATE: 1 << 18, SLAVE: 1 << 19, SHARED: 1 << 20, RELATIME: 1 << 21, STRICTATIME: 1 << 24, LAZYTIME: 1 << 25,
} as const;

/** Mount options that are flags: [set, clear]. */
const FLAGS: Record<string, [number, number]> = {
  ro: [MS.RDONLY, 0], rw: [0, MS.RDONLY], nosuid: [MS.NOSUID, 0], suid: [0, MS.NOSUID], nodev: [MS.NODEV, 0], dev: [0, MS.NODEV],
  noexec: [MS.NOEXEC, 0], exec: [0, MS.NOEXEC], sync: [MS.SYNCHRONOUS, 0], async: [0, MS.SYNCHRONOUS], dirsync: [MS.DIRSYNC, 0],
  remount: [MS.REMOUNT, 0], mand: [MS.MANDLOCK, 0], nomand: [0, MS.MANDLOCK], atime: [0, MS.NOATIME], noatime: [MS.NOATIME, 0],
  diratime: [0, MS.NODIRATIME], nodiratime: [MS.NODIRATIME, 0], bind: [MS.BIND, 0], rbind: [MS.BIND | MS.REC, 0],
  relatime: [MS.RELATIME, 0], norelatime: [0, MS.RELATIME], strictatime: [MS.STRICTATIME, 0], nostrictatime: [0, MS.STRICTATIME],
  lazytime: [MS.LAZYTIME, 0], nolazytime: [0, MS.LAZYTIME], silent: [MS.SILENT, 0], loud: [0, MS.SILENT], nosymfollow: [MS.NOSYMFOLLOW, 0],
};

/** Options engines pass that are no kernel mount options (runc/crun extensions and SELinux relabel requests). */
const ENGINE_ONLY = new Set(['tmpcopyup', 'copy-symlink', 'z', 'Z', 'U', 'idmap', 'ridmap', 'notmpcopyup']);

const PROPAGATION: Record<string, number> = {
  private: MS.PRIVATE, rprivate: MS.PRIVATE | MS.REC, shared: MS.SHARED, rshared: MS.SHARED | MS.REC,
  slave: MS.SLAVE, rslave: MS.SLAVE | MS.REC, unbindable: MS.UNBINDABLE, runbindable: MS.UNBINDABLE | MS.REC,
};

export const CAPABILITIES = [
  'CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP', 'LINUX_IMMUTABLE',
  'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW', 'IPC_LOCK', 'IPC_OWNER', 'SYS_MODULE', 'SYS_RAWIO', 'SYS_CHROOT',
  'SYS_PTRACE', 'SYS_PACCT', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE', 'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'MKNOD', 'LEASE',
  'AUDIT_WRITE', 'AUDIT_CONTROL', 'SETFCAP', 'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG', 'WAKE_ALARM', 'BLOCK_SUSPEND', 'AUDIT_READ',
  'PERFMON', 'BPF', 'CHECKPOINT_RESTORE',
].map((c) => `CAP_${c}`);

/** The devices every container gets (runtime-spec "Default Devices"). */
export const DEFAULT_DEVICES = [
  { path: '/dev/null', type: 'c', major: 1, minor: 3 },
  { path: '/dev/zero', type: 'c', major: 1, minor: 5 },
  { path: '/dev/full', type: 'c', major: 1, minor: 7 },
  { path: '/dev/random', type: 'c', major: 1, minor: 8 },
  { path: '/dev/urandom', type: 'c', major: 1, minor: 9 },
  { path: '/dev/tty', type: 'c', major: 5, minor: 0 },
] as const;

const esc = (s: string | number): string => String(s).replace(/[%\t\n\r]/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
export const line = (...f: (string | number)[]): string => `${f.map(esc).join('\t')}\n`;

export function capMask(names: readonly string[] | undefined, where: string): string {
  let mask = 0n;
  for (const n of names ?? []) {
    const i = CAPABILITIES.indexOf(n.toUpperCase().startsWith('CAP_') ? n.toUpperCase() : `CAP_${n.toUpperCase()}`);
    if (i < 0) throw new OciError(`${where}: unknown capability ${n}; use names such as CAP_CHOWN`);
    mask |= 1n << BigInt(i);
  }
  return mask.toString(16);
}

export function mountFlags(options: readonly string[] = []): { flags: number; propagation: number; data: string[] } {
  let flags = 0;
  let propagation = 0;
  const data: string[] = [];
  for (const o of options) {
    const f = FLAGS[o];
    if (f) flags = (flags | f[0]) & ~f[1];
    else if (PROPAGATION[o] !== undefined) propagation |= PROPAGATION[o]!;
    else if (!ENGINE_ONLY.has(o)) data.push(o);
  }
  return { flags, propagation, data };
}

/**
 * Lines for the process: identity, limits, environment. Shared by create
 * and exec. On restore the restorer keeps root and every capability until
 * it has rebuilt the tree (choosing PIDs needs CAP_SYS_ADMIN); each thread
 * then takes the credentials the image holds, and there is no program to
 * look for.
 */
export function processLines(p: OciProcess, where: string, restoring = false): string {
  let out = '';
  const caps = p.capabilities;
  if (caps && !restoring) {
    const c = (k: keyof typeof caps) => capMask(caps[k], `${where}.capabilities.${k}`);
    out += line('caps', caps.bounding ? c('bounding') : capMask(CAPABILITIES, ''), c('effective'), c('permitted'), c('inheritable'), c('ambient'));
  }
  if (!restoring) out += line('user', p.user.uid, p.user.gid, (p.user.additionalGids ?? []).join(','));
  if (p.user.umask !== undefined) out += line('umask', p.user.umask);
  for (const r of p.rlimits ?? []) out += line('rlimit', r.type, r.soft, r.hard);
  if (p.oomScoreAdj !== undefined) out += line('oom', p.oomScoreAdj);
  out += line('cwd', p.cwd);
  for (const e of p.env ?? []) out += line('env', e);
  if (!restoring) out += line('exe', p.args[0]!);
  return out;
}

export interface PlanInputs {
  config: OciConfig;
  bundle: string;
  /** The start fifo; none on restore, whose processes go on at once. */
  fifo?: string;
  /** Where setup writes the host pid of the container's first process. */
  initPidFile: string;
  consoleSocket?: string;
  cgroups: string[];
  kernelFiles: { source: string; target: string }[];
  /**
   * Restore: the container is built as for create, but the program is
   * vjail's restorer (a host file), given fd 4 (its descriptor handover),
   * in a time namespace with these offsets, nanoseconds.
   */
  restore?: { restorer: string; timeOffsets?: { monotonic: bigint; boottime: bigint } };
}

/** A time-namespace offset line: whole seconds and the non-negative nanoseconds the kernel asks for. */
function offsetLine(clock: string, ns: bigint): string {
  const secs = ns >= 0n ? ns / 1_000_000_000n : -((-ns + 999_999_999n) / 1_000_000_000n);
  return line('timeoffset', clock, String(secs), String(ns - secs * 1_000_000_000n));
}

/** /sys/fs/cgroup for cgroup v1: a tmpfs, each hierarchy's container cgroup bound in under the hierarchy's name. */
function cgroupV1Mount(dest: string, flags: number, cgroups: string[]): string {
  const ro = flags & MS.RDONLY;
  const base = flags & (MS.NOSUID | MS.NODEV | MS.NOEXEC);
  let out = line('mount', 'tmpfs', dest, 'tmpfs', base, 0, 'mode=755');
  for (const dir of cgroups) {
    const m = /^\/sys\/fs\/cgroup\/([^/]+)\//.exec(dir);
    if (!m) continue;
    out += line('mount', dir, `${dest}/${m[1]}`, 'bind', MS.BIND | base | ro, 0, '');
  }
  if (ro) out += line('mount', 'tmpfs', dest, 'tmpfs', MS.REMOUNT | MS.RDONLY | base, 0, 'mode=755');
  return out;
}

/** "mount" lines for OCI mounts (relative bind sources are the bundle's). */
export function mountLines(mounts: NonNullable<OciConfig['mounts']>, bundle: string, cgroups: string[]): string {
  let out = '';
  for (const m of mounts) {
    const { flags, propagation, data } = mountFlags(m.options);
    const type = m.type ?? (flags & MS.BIND ? 'bind' : '');
    let source = m.source ?? type;
    let f = flags;
    if (type === 'bind') f |= MS.BIND;
    if (type === 'cgroup') {
      // cgroup v1: a tmpfs holding the container's own cgroup of each hierarchy, read-only unless rw was asked (as runc).
      out += cgroupV1Mount(m.destination, flags, cgroups);
      continue;
    }
    if (f & MS.BIND && !isAbsolute(source)) source = resolve(bundle, source);
    out += line('mount', source, m.destination, type, f, propagation, data.join(','));
  }
  return out;
}

/** "device" lines for the default devices and these, and the /dev symlinks every container has. */
export function deviceLines(extra: NonNullable<NonNullable<OciConfig['linux']>['devices']>): string {
  let out = '';
  const devices = [...DEFAULT_DEVICES.map((d) => ({ ...d, fileMode: 0o666, uid: 0, gid: 0 })), ...extra];
  for (const d of devices) {
    out += line('device', d.path, d.type === 'u' ? 'c' : d.type, d.major ?? 0, d.minor ?? 0, d.fileMode ?? 0o666, d.uid ?? 0, d.gid ?? 0);
  }
  for (const [target, link] of [['/proc/self/fd', '/dev/fd'], ['/proc/self/fd/0', '/dev/stdin'], ['/proc/self/fd/1', '/dev/stdout'], ['/proc/self/fd/2', '/dev/stderr'], ['pts/ptmx', '/dev/ptmx']]) {
    out += line('symlink', target!, link!);
  }
  return out;
}

type IdMapping = { containerID: number; hostID: number; size: number };
const mapText = (m: IdMapping[]): string => m.map((x) => `${x.containerID}:${x.hostID}:${x.size}`).join(',');

/**
 * A new user namespace (`linux.namespaces` type user without a path): its
 * maps, written by the setup for itself where we hold CAP_SETUID (root, or
 * root of the user namespace a rootless engine runs us in), else by
 * newuidmap/newgidmap from the caller's subordinate IDs.
 */
function userNamespaceLines(config: OciConfig): string {
  const linux = config.linux ?? {};
  const user = (linux.namespaces ?? []).find((n) => n.type === 'user');
  if (!user || user.path) return '';
  const uid = linux.uidMappings ?? [];
  const gid = linux.gidMappings ?? [];
  if (!uid.length || !gid.length) throw new OciError('linux.namespaces has a new user namespace but linux.uidMappings or linux.gidMappings is empty; give both (containerID, hostID, size)');
  if (uid.length > 340 || gid.length > 340) throw new OciError('linux.uidMappings and linux.gidMappings take at most 340 entries each (the kernel\'s limit)');
  return line('userns', mapText(uid), mapText(gid), process.geteuid?.() === 0 ? 'write' : 'newidmap');
}

/** The maps of the user namespace the setup makes for `config` (none: null), as /proc/PID/uid_map shows them. */
export function configUserNamespace(config: OciConfig): IdView | null {
  const linux = config.linux ?? {};
  const user = (linux.namespaces ?? []).find((n) => n.type === 'user');
  if (!user || user.path) return null;
  const ranges = (m: { containerID: number; hostID: number; size: number }[]) => m.map((r) => ({ inside: r.containerID, outside: r.hostID, count: r.size }));
  return { uid: ranges(linux.uidMappings ?? []), gid: ranges(linux.gidMappings ?? []) };
}

/** What the setup cannot do with the config's namespaces; `create` checks it before the monitor starts, so the engine hears why. */
export function checkNamespaces(config: OciConfig): void {
  if (!(config.linux?.namespaces ?? []).some((n) => n.type === 'mount')) throw new OciError('linux.namespaces has no mount namespace; vjail-oci always needs one (pivot_root)');
  userNamespaceLines(config);
}

/**
 * The process, with annotation io.vjail.cpu-baseline=true: its environment
 * keeps glibc to x86-64 baseline code (as `vjail run --cpu-baseline`), so
 * that its checkpoints restore on lesser CPUs.
 */
function withCpuBaseline(config: OciConfig): OciProcess {
  const p = config.process!;
  if (config.annotations?.['io.vjail.cpu-baseline'] !== 'true') return p;
  const env = Object.fromEntries((p.env ?? []).map((e) => {
    const at = e.indexOf('=');
    return at < 0 ? [e, ''] : [e.slice(0, at), e.slice(at + 1)];
  }));
  return { ...p, env: Object.entries(baselineEnv(env)).map(([k, v]) => `${k}=${v}`) };
}

/** The container's root file system as a host path. */
export function rootfsOf(config: OciConfig, bundle: string): string {
  return isAbsolute(config.root!.path) ? config.root!.path : resolve(bundle, config.root!.path);
}

/** The whole setup plan for `create`. */
export function containerPlan(inp: PlanInputs): string {
  const { config } = inp;
  checkNamespaces(config);
  const linux = config.linux ?? {};
  const rootPath = rootfsOf(config, inp.bundle);
  let out = line('rootfs', rootPath) + (inp.fifo ? line('fifo', inp.fifo) : '') + line('initpid', inp.initPidFile);
  if (inp.restore) out += line('program', inp.restore.restorer) + line('passfd', 1);
  if (config.root!.readonly) out += line('readonlyroot', 1);
  if (linux.rootfsPropagation) {
    const p = PROPAGATION[linux.rootfsPropagation];
    if (p === undefined) throw new OciError(`linux.rootfsPropagation: unknown value ${linux.rootfsPropagation}; use private, slave, shared or unbindable (r-prefixed for recursive)`);
    out += line('rootpropagation', p | MS.REC);
  }
  const nss = linux.namespaces ?? [];
  out += userNamespaceLines(config);
  const offsets = inp.restore?.timeOffsets;
  for (const n of nss) if (!(offsets && n.type === 'time')) out += line('ns', n.type, n.path ?? '');
  if (offsets) {
    // The clocks go on from where the image's were (they include the config's own offsets).
    out += line('ns', 'time', '') + offsetLine('monotonic', offsets.monotonic) + offsetLine('boottime', offsets.boottime);
  } else {
    for (const [clock, o] of Object.entries(linux.timeOffsets ?? {})) out += line('timeoffset', clock, o.secs ?? 0, o.nanosecs ?? 0);
  }
  for (const c of inp.cgroups) out += line('cgroup', c);
  out += mountLines(config.mounts ?? [], inp.bundle, inp.cgroups) + deviceLines(linux.devices ?? []);
  for (const k of inp.kernelFiles) out += line('kfile', k.source, k.target);
  if (config.hostname) out += line('hostname', config.hostname);
  if (config.domainname) out += line('domainname', config.domainname);
  for (const [k, v] of Object.entries(linux.sysctl ?? {})) out += line('sysctl', k, v);
  for (const p of linux.maskedPaths ?? []) out += line('mask', p);
  for (const p of linux.readonlyPaths ?? []) out += line('readonly', p);
  const p = withCpuBaseline(config);
  if (p.terminal) {
    if (!inp.consoleSocket) throw new OciError('process.terminal is set but no --console-socket was given; pass one, or set terminal to false');
    out += line('console', inp.consoleSocket, p.consoleSize?.height ?? 0, p.consoleSize?.width ?? 0);
  }
  return out + processLines(p, 'process', !!inp.restore);
}
