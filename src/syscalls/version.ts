/**
 * Linux kernel release numbers: parsing and ordering.
 *
 * Accepts release strings as they appear in syscall tables and profiles
 * ("1.0", "2.6.32", "4.19", "6.18") and as `uname -r` prints them
 * ("6.1.0-27-amd64", "4.19.0-vjail", "6.8.0-rc3"). Anything after the numeric
 * part (a "-" or "+" suffix) is ignored for ordering.
 */

export interface KernelVersion {
  major: number;
  minor: number;
  /** Third component ("sublevel"); 0 when absent. */
  patch: number;
}

const VERSION_RE = /^\s*v?(\d+)\.(\d+)(?:\.(\d+))?(?:\.\d+)*(?:[-+~_].*)?\s*$/;

/** Parse a kernel release string. Throws on anything that does not start with "MAJOR.MINOR". */
export function parseKernelVersion(s: string): KernelVersion {
  const m = VERSION_RE.exec(s);
  if (!m) throw new Error(`not a kernel version: ${JSON.stringify(s)}`);
  return { major: Number(m[1]), minor: Number(m[2]), patch: m[3] === undefined ? 0 : Number(m[3]) };
}

/** Like parseKernelVersion, but returns undefined instead of throwing. */
export function tryParseKernelVersion(s: string): KernelVersion | undefined {
  return VERSION_RE.test(s) ? parseKernelVersion(s) : undefined;
}

/**
 * Order two kernel releases: negative if a is older, 0 if the same release,
 * positive if a is newer. "4.19" and "4.19.0-vjail" compare equal.
 */
export function compareKernelVersions(a: string | KernelVersion, b: string | KernelVersion): number {
  const x = typeof a === 'string' ? parseKernelVersion(a) : a;
  const y = typeof b === 'string' ? parseKernelVersion(b) : b;
  return Math.sign(x.major - y.major || x.minor - y.minor || x.patch - y.patch);
}

/** "MAJOR.MINOR" or "MAJOR.MINOR.PATCH" (patch only when non-zero). */
export function formatKernelVersion(v: KernelVersion): string {
  return v.patch ? `${v.major}.${v.minor}.${v.patch}` : `${v.major}.${v.minor}`;
}
