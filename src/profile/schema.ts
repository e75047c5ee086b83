import type * as Zod from 'zod';
import { ENOSYS, INTERNAL_FAILURE_ERRNO } from '../errno.js';
import { zod } from '../zod.js';
import type { Profile, UnameFields } from './types.js';

/**
 * A profile that cannot be used. The message is one line that names the
 * problem and the fix; the CLI prints it as is and exits with status 2.
 */
export class ProfileError extends Error {
  override name = 'ProfileError';
}

/** What a missing syscall returns. */
export { ENOSYS };

/** struct new_utsname fields are 65 bytes including the terminating NUL. */
const UTS_FIELD_MAX = 64;

/** "4.19", "2.6.32": what `kernel` holds in every profile but `host`. */
const KERNEL_VERSION = /^[1-9]\d*\.\d+(?:\.\d+)?$/;

/** The zod schemas, built on first use (see src/zod.ts). */
function buildSchemas(z: typeof Zod) {
  const utsField = z
    .string()
    .min(1, 'must not be empty')
    .refine((s) => Buffer.byteLength(s, 'utf8') <= UTS_FIELD_MAX, `must be at most ${UTS_FIELD_MAX} bytes (utsname limit)`);

  const syscallName = z.string().regex(/^[a-z_][a-z0-9_]*$/, 'must be a syscall name such as "statx"');

  const unameSchema = z.strictObject({
    sysname: utsField,
    nodename: utsField.optional(),
    release: utsField,
    version: utsField.regex(/^#\d/, 'must look like `uname -v` output, starting with "#" and the build number'),
    machine: utsField,
    domainname: utsField,
  });

  const overridesSchema = z.strictObject({
    add: z.array(syscallName).optional(),
    remove: z.array(syscallName).optional(),
  });

  /** Keys allowed at each object path of a profile file, for "unknown key" messages. */
    const allowedKeys: Record<string, readonly string[]> = {
    '': ['name', 'description', 'kernel', 'uname', 'overrides', 'shimErrorErrno'],
    uname: Object.keys(unameSchema.shape),
    overrides: Object.keys(overridesSchema.shape),
  };

  /** The on-disk form of a profile (profiles/NAME.json). */
    const profileFile = z
    .strictObject({
      name: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, 'must be lower-case letters, digits, ".", "_" or "-"'),
      description: z.string().min(1, 'must not be empty'),
      kernel: z.string().refine((v) => v === 'host' || KERNEL_VERSION.test(v), 'must be "host" or a kernel version such as "4.19"'),
      uname: unameSchema.optional(),
      overrides: overridesSchema.optional(),
      shimErrorErrno: z.number().int('must be a whole number').min(1, 'must be an errno from 1 to 4095').max(4095, 'must be an errno from 1 to 4095').optional(),
    })
    .superRefine((p, ctx) => {
      if (p.kernel === 'host') {
        if (p.uname) ctx.addIssue({ code: 'custom', path: ['uname'], message: 'must be absent when "kernel" is "host" (the running kernel\'s uname is used); remove it' });
      } else if (!p.uname) {
        ctx.addIssue({ code: 'custom', path: ['uname'], message: 'is required unless "kernel" is "host"; add the uname fields the profile presents' });
      } else if (!releaseMatchesKernel(p.uname.release, p.kernel)) {
        ctx.addIssue({
          code: 'custom',
          path: ['uname', 'release'],
          message: `is ${JSON.stringify(p.uname.release)} but must start with the kernel version ${JSON.stringify(p.kernel)}; fix "uname.release" or "kernel"`,
        });
      }
      const remove = new Set(p.overrides?.remove ?? []);
      const both = (p.overrides?.add ?? []).filter((n) => remove.has(n));
      if (both.length > 0) {
        ctx.addIssue({ code: 'custom', path: ['overrides'], message: `lists ${JSON.stringify(both[0])} in both "add" and "remove"; keep it in one` });
      }
    });
  return { profileFile, allowedKeys };
}

let built: ReturnType<typeof buildSchemas> | undefined;
const schemas = (): ReturnType<typeof buildSchemas> => (built ??= buildSchemas(zod()));

export type ProfileFile = Zod.infer<ReturnType<typeof buildSchemas>['profileFile']>;

/** "4.19.0-27-amd64" matches kernel "4.19"; "4.190" and "4.1" do not. */
export function releaseMatchesKernel(release: string, kernel: string): boolean {
  return release.startsWith(kernel) && (release.length === kernel.length || !/\d/.test(release[kernel.length]));
}

/** The running kernel, as the `host` profile presents it. */
export interface HostRelease {
  /** `uname -r`, e.g. "6.1.0-37-amd64". */
  release: string;
  /** `uname -v`. */
  version: string;
  /** `uname -m`; default "x86_64". */
  machine?: string;
  /** Default "(none)", the kernel's own default. */
  domainname?: string;
}

/** "6.1.0-37-amd64" → "6.1": the syscall-set version of a release string. */
export function kernelOfRelease(release: string): string {
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (!m) throw new ProfileError(`cannot read a kernel version from the release ${JSON.stringify(release)}; expected it to start like "6.1"`);
  return `${m[1]}.${m[2]}`;
}

/**
 * Validate a parsed profile file and build the Profile. `where` names the
 * profile in messages ('profile "linux-4.19"', 'profile file ./x.json').
 */
export function parseProfile(raw: unknown, where: string, host: HostRelease): Profile {
  const r = schemas().profileFile.safeParse(raw);
  if (!r.success) throw new ProfileError(`${where}: ${describeIssue(r.error.issues[0], raw)}`);
  const f = r.data;
  const overrides = { add: [...(f.overrides?.add ?? [])].sort(), remove: [...(f.overrides?.remove ?? [])].sort() };
  const shimErrorErrno = f.shimErrorErrno ?? INTERNAL_FAILURE_ERRNO;
  if (f.kernel === 'host') {
    const uname: UnameFields = {
      sysname: 'Linux',
      release: host.release,
      version: host.version,
      machine: host.machine ?? 'x86_64',
      domainname: host.domainname ?? '(none)',
    };
    return { name: f.name, description: f.description, kernel: kernelOfRelease(host.release), isHost: true, uname, overrides, shimErrorErrno };
  }
  // The refinement above guarantees uname for non-host profiles.
  const uname = { ...f.uname! };
  if (uname.nodename === undefined) delete uname.nodename;
  return { name: f.name, description: f.description, kernel: f.kernel, isHost: false, uname, overrides, shimErrorErrno };
}

function valueAt(raw: unknown, path: readonly PropertyKey[]): unknown {
  let v = raw;
  for (const k of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/** One zod issue as one line: which field, what is wrong, how to fix it. */
function describeIssue(issue: Zod.core.$ZodIssue, raw: unknown): string {
  const at = issue.path.map(String).join('.');
  const field = at === '' ? 'the profile' : `field "${at}"`;
  switch (issue.code) {
    case 'unrecognized_keys': {
      const allowed = schemas().allowedKeys[at] ?? [];
      const key = issue.keys[0];
      return `unknown key "${at === '' ? key : `${at}.${key}`}"; remove it (allowed here: ${allowed.join(', ')})`;
    }
    case 'invalid_type': {
      const got = valueAt(raw, issue.path);
      if (got === undefined) return `missing ${field}; add it (${issue.expected})`;
      const expected = issue.expected === 'int' ? 'a whole number' : `${/^[aeiou]/.test(issue.expected) ? 'an' : 'a'} ${issue.expected}`;
      return `${field} must be ${expected}, not ${typeName(got)}`;
    }
    default:
      return `${field} ${issue.message.replace(/\s+/g, ' ')}`;
  }
}

/**
 * What a validated profile depends on besides its file: the validator's own
 * code. Part of the cache key (src/profile/load.ts), so a changed validator
 * never reuses profiles validated by the old one.
 */
export function validatorFingerprint(): string {
  return [buildSchemas, parseProfile, kernelOfRelease, releaseMatchesKernel].map(String).join('\n');
}
