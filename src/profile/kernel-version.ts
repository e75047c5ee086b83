/**
 * Kernel version comparison used by profiles and plans. Stands in until the
 * shared helpers in src/syscalls/version.ts exist; then this file goes.
 */

/** "4.19" → [4, 19]; "2.6.32-754.el6" → [2, 6, 32]. Throws on text that does not start with a version. */
export function parseKernelVersion(v: string): number[] {
  const m = /^\d+(?:\.\d+)*/.exec(v);
  if (!m) throw new Error(`not a kernel version: ${JSON.stringify(v)}`);
  return m[0].split('.').map(Number);
}

/** Negative, zero or positive as a is older than, the same as or newer than b. Missing parts count as 0. */
export function compareKernelVersions(a: string, b: string): number {
  const x = parseKernelVersion(a);
  const y = parseKernelVersion(b);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
