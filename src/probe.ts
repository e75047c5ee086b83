import { shims } from '../shims/index.js';
import { native } from './native.js';
import type { ProbeResults } from './plan/host.js';
import { syscallTable } from './syscalls/table.js';

const ENOSYS = -38;
/** Every argument invalid (-1: a bad fd, a bad pointer, impossible flags): the kernel
 * rejects the call before it does anything, with ENOSYS only if it lacks the call. */
const INVALID_ARGS = [-1n, -1n, -1n, -1n, -1n, -1n];

/**
 * Ask the running kernel which of `names` it implements, by trying each in a
 * throwaway child with arguments it must reject. A shim may name safer
 * arguments for its syscalls (`probeArgs`).
 */
export function probeHostSyscalls(names: readonly string[]): ProbeResults {
  const table = syscallTable('x86_64');
  const calls: [number, bigint[]][] = [];
  const probed: string[] = [];
  for (const name of names) {
    const info = table.byName(name);
    if (!info) continue;
    const shim = [...shims.values()].find((s) => s.syscalls.includes(name));
    calls.push([info.nr, shim?.probeArgs?.[name] ?? INVALID_ARGS]);
    probed.push(name);
  }
  const results = calls.length ? native().probeSyscalls(calls) : [];
  const out = new Map<string, boolean>();
  probed.forEach((name, i) => {
    if (i < results.length) out.set(name, results[i] !== ENOSYS);
  });
  return out;
}
