import { readFileSync } from 'node:fs';
import { dataPath } from '../paths.js';
import type { ArchName } from '../plan/action.js';

/** How the trace decoder prints one argument. */
export type ArgKind =
  | 'int' // signed decimal
  | 'uint' // unsigned decimal
  | 'hex' // flags, masks, addresses shown in hex
  | 'fd' // file descriptor (AT_FDCWD shown by name)
  | 'ptr' // pointer, shown in hex
  | 'str' // NUL-terminated string in caller memory
  | 'size'; // size_t

export interface SyscallArg {
  name: string;
  kind: ArgKind;
}

export interface SyscallInfo {
  nr: number;
  name: string;
  /** Kernel release that first had it on this arch, e.g. "2.6.16". */
  added: string;
  /** Kernel release that removed it on this arch, if any. */
  removed?: string;
  args: SyscallArg[];
}

export interface SyscallTableFile {
  arch: ArchName;
  /** AUDIT_ARCH_* value the kernel puts in seccomp_data.arch. */
  auditArch: number;
  sources: string[];
  syscalls: SyscallInfo[];
}

export class SyscallTable {
  readonly arch: ArchName;
  readonly auditArch: number;
  readonly all: readonly SyscallInfo[];
  readonly maxNr: number;
  private readonly nrIndex = new Map<number, SyscallInfo>();
  private readonly nameIndex = new Map<string, SyscallInfo>();

  constructor(file: SyscallTableFile) {
    this.arch = file.arch;
    this.auditArch = file.auditArch;
    this.all = file.syscalls;
    let max = 0;
    for (const s of file.syscalls) {
      this.nrIndex.set(s.nr, s);
      this.nameIndex.set(s.name, s);
      if (s.nr > max) max = s.nr;
    }
    this.maxNr = max;
  }

  byNr(nr: number): SyscallInfo | undefined {
    return this.nrIndex.get(nr);
  }

  byName(name: string): SyscallInfo | undefined {
    return this.nameIndex.get(name);
  }
}

const cache = new Map<ArchName, SyscallTable>();

/** The syscall table of one architecture, loaded once from profiles/syscalls/ARCH.json. */
export function syscallTable(arch: ArchName): SyscallTable {
  let t = cache.get(arch);
  if (!t) {
    const file = JSON.parse(readFileSync(dataPath('profiles', 'syscalls', `${arch}.json`), 'utf8')) as SyscallTableFile;
    t = new SyscallTable(file);
    cache.set(arch, t);
  }
  return t;
}
