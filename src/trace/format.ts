import { errnoName } from '../errno.js';
import type { ArchName } from '../plan/action.js';
import { syscallTable, type SyscallArg } from '../syscalls/table.js';
import type { ShimResult } from '../../shims/types.js';

export { errnoName };

const AT_FDCWD = -100;
const STRING_LIMIT = 64;

function decodeArg(arg: SyscallArg, raw: bigint, readString: (addr: bigint) => string | undefined): string {
  const signed = BigInt.asIntN(64, raw);
  switch (arg.kind) {
    case 'str': {
      if (raw === 0n) return 'NULL';
      const s = readString(raw);
      if (s === undefined) return `0x${raw.toString(16)}`;
      const cut = s.length > STRING_LIMIT ? `${s.slice(0, STRING_LIMIT)}"...` : `${s}"`;
      return `"${cut.replace(/\n/g, '\\n')}`;
    }
    case 'fd': {
      const fd = Number(BigInt.asIntN(32, raw));
      return fd === AT_FDCWD ? 'AT_FDCWD' : String(fd);
    }
    case 'int':
      return String(BigInt.asIntN(32, raw) === signed ? signed : BigInt.asIntN(32, raw));
    case 'uint':
    case 'size':
      return raw.toString();
    case 'ptr':
      return raw === 0n ? 'NULL' : `0x${raw.toString(16)}`;
    case 'hex':
      return `0x${raw.toString(16)}`;
  }
}

export function formatResult(r: ShimResult): string {
  switch (r.kind) {
    case 'value':
      return String(BigInt.asIntN(64, r.value));
    case 'errno':
      return `-1 ${errnoName(r.errno)}`;
    case 'continue':
      return '? (run by the kernel)';
    case 'addfd':
      return '(fd installed)';
  }
}

/**
 * One strace-style line: `[pid 42] openat(AT_FDCWD, "/etc/hosts", 0x0) = 3 <shim openat>`.
 * Strings are read from the caller while the call is still pending.
 */
export function formatCall(
  pid: number,
  arch: ArchName,
  nr: number,
  args: readonly bigint[],
  readString: (addr: bigint) => string | undefined,
): string {
  const info = syscallTable(arch).byNr(nr);
  const name = info?.name ?? `syscall_${nr}`;
  const shapes: SyscallArg[] = info?.args ?? args.map((_, i) => ({ name: `a${i}`, kind: 'hex' as const }));
  const shown = shapes.map((shape, i) => decodeArg(shape, args[i], readString));
  const archTag = arch === 'x86_64' ? '' : ` [${arch}]`;
  return `[pid ${pid}]${archTag} ${name}(${shown.join(', ')})`;
}
