import { readFileSync } from 'node:fs';
import { release, version } from 'node:os';
import { shimForSyscall } from '../shims/index.js';
import { readCached, writeCached } from './cache.js';
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
    const shim = shimForSyscall(name);
    calls.push([info.nr, shim?.probeArgs?.[name] ?? INVALID_ARGS]);
    probed.push(name);
  }
  const results = calls.length ? probeOnce(calls) : [];
  const out = new Map<string, boolean>();
  probed.forEach((name, i) => {
    if (i < results.length) out.set(name, results[i] !== ENOSYS);
  });
  return out;
}

/** This boot's id (what the kernel implements cannot change before the next boot), or undefined. */
export function bootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return undefined;
  }
}

/**
 * The kernel's answers to these probe calls, asked once per boot: what a
 * running kernel implements does not change until it reboots, and the probe
 * costs a fork.
 */
function probeOnce(calls: [number, bigint[]][]): number[] {
  const boot = bootId();
  if (boot === undefined) return native().probeSyscalls(calls);
  const inputs = JSON.stringify([boot, release(), version(), calls], (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
  const valid = (v: unknown) => (Array.isArray(v) && v.length <= calls.length && v.every(Number.isInteger) ? (v as number[]) : undefined);
  const hit = readCached('probes', inputs, inputs, valid);
  if (hit) return hit;
  const results = native().probeSyscalls(calls);
  writeCached('probes', inputs, inputs, results);
  return results;
}
