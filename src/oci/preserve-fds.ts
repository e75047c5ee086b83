/**
 * `--preserve-fds N` (create, run, exec): fds 3..3+N-1 of vjail-oci become
 * the container process's fds 3..3+N-1, as runc passes them (podman's
 * --preserve-fds, socket activation's LISTEN_FDS). They travel to the
 * monitor as its fds 4.. (its fd 3 is the ready pipe), and on to vjail-init.
 */
import { fstatSync } from 'node:fs';
import { OciError } from './errors.js';

/** The first of the preserved fds in a monitor. */
export const MONITOR_PRESERVED_FD = 4;

/** The count `--preserve-fds` gives, checked: each of those fds must be open here. */
export function preservedCount(text: string | undefined): number {
  if (text === undefined || text === '0') return 0;
  if (!/^\d+$/.test(text) || Number(text) > 1000) throw new OciError(`--preserve-fds ${text}: not a count of descriptors; give N to pass fds 3..3+N-1 (at most 1000)`);
  const n = Number(text);
  for (let fd = 3; fd < 3 + n; fd++) {
    try {
      fstatSync(fd);
    } catch {
      throw new OciError(`--preserve-fds ${n}: fd ${fd} is not open; pass only as many descriptors as are open from fd 3`);
    }
  }
  return n;
}

/** Our fds 3..3+n-1, as spawn's stdio entries after the ready pipe. */
export function preservedStdio(n: number): number[] {
  return Array.from({ length: n }, (_, i) => 3 + i);
}

/** In a monitor given `n` preserved fds: their numbers here. */
export function monitorPreserved(n: number): number[] {
  return Array.from({ length: n }, (_, i) => MONITOR_PRESERVED_FD + i);
}
