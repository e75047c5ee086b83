import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Profile } from '../src/profile/types.js';

/**
 * The kernel identity a profile presents, in every form a program can read
 * it: uname(2), /proc/version and /proc/sys/kernel/*. One place, so that all
 * of them agree.
 */

/** The host name the jail sees: the profile's, else the host's. */
export function presentedHostname(profile: Profile): string {
  if (profile.uname.nodename !== undefined) return profile.uname.nodename;
  try {
    return readFileSync('/proc/sys/kernel/hostname', 'utf8').replace(/\n$/, '');
  } catch {
    return hostname();
  }
}

/**
 * /proc/version: "SYSNAME version RELEASE (BUILDER) (COMPILER) VERSION". Profiles
 * do not record who built the kernel or with what, so those two are fixed
 * placeholders; everything a program parses (the release, `uname -v`) is the profile's.
 */
export function procVersion(profile: Profile): string {
  const u = profile.uname;
  return `${u.sysname} version ${u.release} (vjail@localhost) (unknown compiler) ${u.version}\n`;
}

/**
 * /proc/sys/kernel entries (relative to /proc/sys) whose value is the
 * profile's, without the trailing newline the file has. hostname is only
 * presented when the profile fixes one; otherwise it is the host's anyway.
 */
export function presentedSysctls(profile: Profile): Map<string, string> {
  const m = new Map<string, string>([
    ['kernel/ostype', profile.uname.sysname],
    ['kernel/osrelease', profile.uname.release],
    ['kernel/version', profile.uname.version],
    ['kernel/domainname', profile.uname.domainname],
  ]);
  if (profile.uname.nodename !== undefined) m.set('kernel/hostname', profile.uname.nodename);
  return m;
}

/** Presented sysctls that the kernel lets nobody write (mode 0444, refused even to root). */
export const READ_ONLY_SYSCTLS: ReadonlySet<string> = new Set(['kernel/ostype', 'kernel/osrelease', 'kernel/version']);

/**
 * The kernel files a jail can be shown by mounting, path → contents: the
 * read-only ones (/proc/version, ostype, osrelease, version). Mounted over
 * the real files in the jail's mount namespace, they cost nothing per open.
 */
export function mountableKernelFiles(profile: Profile): Map<string, string> {
  const files = new Map<string, string>([['/proc/version', procVersion(profile)]]);
  for (const [key, value] of presentedSysctls(profile)) {
    if (READ_ONLY_SYSCTLS.has(key)) files.set(`/proc/sys/${key}`, `${value}\n`);
  }
  return files;
}
