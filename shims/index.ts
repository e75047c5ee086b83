import type { Shim } from './types.js';
import { closeRangeShim } from './close-range.js';
import { clone3Shim } from './clone3.js';
import { fchmodat2Shim } from './fchmodat2.js';
import { futex2Shim } from './futex2.js';
import { getrandomShim } from './getrandom.js';
import { oldunameShim } from './olduname.js';
import { openShim } from './open.js';
import { sysctlShim } from './sysctl.js';
import { copyFileRangeShim } from './copy-file-range.js';
import { epollPwait2Shim } from './epoll-pwait2.js';
import { faccessat2Shim } from './faccessat2.js';
import { memfdCreateShim } from './memfd-create.js';
import { pidfdOpenShim } from './pidfd-open.js';
import { renameat2Shim } from './renameat2.js';
import { statxShim } from './statx.js';
import { unameShim } from './uname.js';
import { cachestatShim } from './cachestat.js';
import { fileAttrShim } from './file-attr.js';
import { xattratShim } from './xattrat.js';

/** Every shim vjail has, by name. docs/SUPPORT.md is printed from this registry. */
export const shims: ReadonlyMap<string, Shim> = new Map([unameShim, oldunameShim, openShim, sysctlShim, fchmodat2Shim, futex2Shim, closeRangeShim, getrandomShim, clone3Shim, statxShim, faccessat2Shim, renameat2Shim, memfdCreateShim, pidfdOpenShim, copyFileRangeShim, epollPwait2Shim, cachestatShim, xattratShim, fileAttrShim].map((s) => [s.name, s]));

const bySyscall = new Map<string, Shim>();
for (const s of shims.values()) for (const name of s.syscalls) bySyscall.set(name, s);

/** The shim that can answer syscall `name`, if any. */
export function shimForSyscall(name: string): Shim | undefined {
  return bySyscall.get(name);
}
