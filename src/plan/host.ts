import { release, version } from 'node:os';
import { shims } from '../../shims/index.js';
import { compareKernelVersions } from '../syscalls/version.js';
import { type SyscallInfo, type SyscallTable, syscallTable } from '../syscalls/table.js';
import type { ArchName } from './action.js';

/** What the plan needs to know about the kernel vjail runs on. */
export interface HostInfo {
  /** `uname -r` of the host. */
  release: string;
  /** `uname -v` of the host. */
  version: string;
  /** Does the host kernel implement this syscall? */
  hasSyscall(arch: ArchName, name: string): boolean;
}

/** The syscall tables a plan is derived from, one per planned architecture. */
export interface PlanTables {
  x86_64: SyscallTable;
  i386: SyscallTable;
}

/** The shipped tables (profiles/syscalls/*.json), loaded on first use. */
export function defaultTables(): PlanTables {
  return { x86_64: syscallTable('x86_64'), i386: syscallTable('i386') };
}

/**
 * What probing the running kernel found: syscall name → implemented. A key
 * "name" holds for every architecture, a key "i386:name" for that one only
 * (it wins over the plain name). Names not probed fall back to the tables.
 */
export type ProbeResults = ReadonlyMap<string, boolean>;

/**
 * Tries the given syscalls on the running kernel (with arguments that cannot
 * do harm) and reports which exist. The native prober implements this.
 */
export type SyscallProber = (names: readonly string[]) => ProbeResults;

/** Was `info` in kernel `kernel`: added at or before it and not removed by then? */
export function existsIn(info: SyscallInfo, kernel: string): boolean {
  if (compareKernelVersions(info.added, kernel) > 0) return false;
  return info.removed === undefined || compareKernelVersions(info.removed, kernel) > 0;
}

/**
 * The syscalls worth probing: those a shim can stand in for. For these the
 * answer decides between the kernel and the shim, and a distribution kernel
 * may have them earlier (backports) or not at all (configured out) whatever
 * its version says.
 */
export function probeTargets(): string[] {
  return shimmedSyscalls();
}

/** Every syscall some shim answers, sorted. */
export function shimmedSyscalls(): string[] {
  return [...new Set([...shims.values()].flatMap((s) => s.syscalls))].sort();
}

/**
 * Host knowledge from the kernel version and the tables, corrected by probe
 * results where there are any. Tables default to the shipped ones and are
 * read only when a question is asked.
 */
export function hostInfoFromVersion(release: string, version: string, probed?: ProbeResults, tables?: PlanTables): HostInfo {
  let t = tables;
  return {
    release,
    version,
    hasSyscall(arch: ArchName, name: string): boolean {
      const seen = probed?.get(`${arch}:${name}`) ?? probed?.get(name);
      if (seen !== undefined) return seen;
      t ??= defaultTables();
      const info = t[arch].byName(name);
      return info !== undefined && existsIn(info, release);
    },
  };
}

/** The running host: `os.release()`/`os.version()`, and the prober's answers for `probeTargets()`. */
export function describeHost(prober?: SyscallProber, tables?: PlanTables): HostInfo {
  return hostInfoFromVersion(release(), version(), prober?.(probeTargets()), tables);
}
