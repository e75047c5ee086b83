import type { NativeAnswer } from '../src/plan/action.js';
import type { Profile } from '../src/profile/types.js';
import { presentedHostname } from './kernel-files.js';
import type { Shim, ShimResult } from './types.js';

const FIELDS = ['sysname', 'nodename', 'release', 'version', 'machine'] as const;

/**
 * The i386-only predecessors of uname(2): olduname (109) fills struct
 * old_utsname (five 65-byte fields, no domainname); oldolduname (59) fills
 * struct oldold_utsname (five 9-byte fields, of which the kernel copies 8
 * bytes and a NUL).
 */
export function oldUtsnameBytes(syscall: string, profile: Profile): Uint8Array {
  const field = syscall === 'oldolduname' ? 9 : 65;
  const out = Buffer.alloc(field * FIELDS.length);
  FIELDS.forEach((f, i) => {
    const value = f === 'nodename' ? presentedHostname(profile) : profile.uname[f];
    out.write(value, i * field, field - 1, 'utf8');
  });
  return out;
}

export const oldunameShim: Shim = {
  name: 'olduname',
  syscalls: ['olduname', 'oldolduname'],
  doc:
    'The i386 olduname (struct old_utsname: five 65-byte fields) and oldolduname (struct oldold_utsname: five ' +
    '9-byte fields, each at most 8 bytes and a NUL, truncated as the kernel does) answer with the profile\'s sysname, ' +
    'nodename, release, version and machine, natively, so they agree with uname(2). A bad pointer gets EFAULT.',
  fixedAnswer(syscall: string, profile: Profile): NativeAnswer | undefined {
    if (profile.isHost) return undefined;
    return { kind: 'struct', argIndex: 0, bytes: oldUtsnameBytes(syscall, profile) };
  },
  handle(n, ctx): ShimResult {
    try {
      ctx.caller.write(BigInt.asUintN(32, n.args[0]), oldUtsnameBytes(n.name, ctx.profile));
    } catch {
      return { kind: 'errno', errno: 14 /* EFAULT */ };
    }
    return { kind: 'value', value: 0n };
  },
};
