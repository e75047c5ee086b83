import { hostname } from 'node:os';
import type { NativeAnswer } from '../src/plan/action.js';
import type { Profile } from '../src/profile/types.js';
import type { Shim, ShimResult } from './types.js';

/** struct new_utsname: six NUL-padded fields of 65 bytes. */
const FIELD = 65;
const FIELDS = ['sysname', 'nodename', 'release', 'version', 'machine', 'domainname'] as const;

/** The bytes of struct new_utsname this profile presents. */
export function utsnameBytes(profile: Profile): Uint8Array {
  const out = Buffer.alloc(FIELD * FIELDS.length);
  FIELDS.forEach((f, i) => {
    const value = f === 'nodename' ? (profile.uname.nodename ?? hostname()) : profile.uname[f];
    // Truncate to 64 bytes so the field stays NUL-terminated, as the kernel guarantees.
    out.write(value, i * FIELD, FIELD - 1, 'utf8');
  });
  return out;
}

/** Built once per jail (about 2 µs, most of it reading the host name), as the native answer is. */
const answers = new WeakMap<object, Uint8Array>();
function utsnameFor(jail: object, profile: Profile): Uint8Array {
  let bytes = answers.get(jail);
  if (!bytes) answers.set(jail, (bytes = utsnameBytes(profile)));
  return bytes;
}

export const unameShim: Shim = {
  name: 'uname',
  syscalls: ['uname'],
  doc:
    'uname(2) answers with the profile\'s sysname, release, version, machine and domainname; ' +
    'nodename is the profile\'s, else the host name read when the jail starts (a later ' +
    'sethostname inside the jail is not reflected). Answered natively, without JavaScript. ' +
    'A bad buffer pointer gets EFAULT, as from the kernel.',
  fixedAnswer(_syscall: string, profile: Profile): NativeAnswer {
    return { kind: 'struct', argIndex: 0, bytes: utsnameBytes(profile) };
  },
  handle(n, ctx): ShimResult {
    try {
      ctx.caller.write(n.args[0], utsnameFor(ctx.jail, ctx.profile));
    } catch {
      return { kind: 'errno', errno: 14 /* EFAULT */ };
    }
    return { kind: 'value', value: 0n };
  },
};
