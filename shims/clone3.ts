import type { Shim, ShimResult } from './types.js';
import { ENOSYS } from '../src/errno.js';


export const clone3Shim: Shim = {
  name: 'clone3',
  syscalls: ['clone3'],
  doc:
    'clone3 (Linux 5.3) always fails with ENOSYS, as on a kernel without it: C libraries ' +
    '(glibc 2.34+, musl) then fall back to clone(2), which the jail supervises as usual. ' +
    'Features only clone3 has (CLONE_INTO_CGROUP, set_tid, a pidfd of a thread) are therefore ' +
    'unavailable to a workload whose profile lacks clone3.',
  handle(): ShimResult {
    return { kind: 'errno', errno: ENOSYS };
  },
};
