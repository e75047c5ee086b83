/**
 * Clocks: CLOCK_MONOTONIC and CLOCK_BOOTTIME count from the host's boot, so
 * on another host (or after a reboot) they may be behind the checkpoint's,
 * and a restored program would see them go back. The jail's clocks are read
 * at the checkpoint inside a process of it (so a time namespace it already
 * ran in counts); at restore, if this host's are behind, the jail starts in
 * a new time namespace whose offsets put them at least where they were
 * (vjail-init unshares CLONE_NEWTIME before creating the jail's first
 * process and writes the offsets; see time_namespaces(7)).
 */
import { existsSync, readFileSync } from 'node:fs';
import { type Clocks, PAGE_SIZE } from '../../image/format.js';
import type { Tracee } from '../tracee.js';
import { SYS } from '../syscalls.js';
import type { Scratch } from './memory.js';

const SYS_CLOCK_GETTIME = 228;
const MAP_PRIVATE = 0x02;
const MAP_ANONYMOUS = 0x20;
const CLOCK_MONOTONIC = 1;
const CLOCK_BOOTTIME = 7;
const NS = 1_000_000_000n;

async function clockIn(t: Tracee, scratch: Scratch, clock: number): Promise<bigint> {
  await t.syscallOk('clock_gettime', SYS_CLOCK_GETTIME, clock, scratch.addr);
  const ts = t.read(scratch.addr, 16);
  return ts.readBigInt64LE(0) * NS + ts.readBigInt64LE(8);
}

/** Both clocks as the process (and so its jail) sees them now, read inside it (a scratch page is mapped and unmapped). */
export async function collectClocks(t: Tracee): Promise<Clocks> {
  const addr = await t.syscallOk('mmap of a scratch page', SYS.mmap, 0, PAGE_SIZE, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  const scratch: Scratch = { addr, size: PAGE_SIZE };
  try {
    return { monotonic: String(await clockIn(t, scratch, CLOCK_MONOTONIC)), boottime: String(await clockIn(t, scratch, CLOCK_BOOTTIME)) };
  } finally {
    await t.syscall(SYS.munmap, addr, PAGE_SIZE);
  }
}

/** This process's time namespace offsets (nanoseconds), zero outside one. */
function ownOffsets(): { monotonic: bigint; boottime: bigint } {
  return timensOffsets('self');
}

/** The time namespace offsets (nanoseconds) of process `pid`'s children (its own unless it unshared one), zero outside one. */
export function timensOffsets(pid: number | 'self'): { monotonic: bigint; boottime: bigint } {
  const out = { monotonic: 0n, boottime: 0n };
  const path = `/proc/${pid}/timens_offsets`;
  if (!existsSync(path)) return out;
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^(\S+)\s+(-?\d+)\s+(\d+)$/.exec(line.trim());
    if (!m) continue;
    const v = BigInt(m[2]!) * NS + BigInt(m[3]!);
    if (m[1] === 'monotonic' || m[1] === '1') out.monotonic = v;
    if (m[1] === 'boottime' || m[1] === '7') out.boottime = v;
  }
  return out;
}

/**
 * The host's clocks now, as the initial time namespace counts them, never
 * ahead of the truth: CLOCK_MONOTONIC from hrtime, CLOCK_BOOTTIME from
 * /proc/uptime (truncated to 10 ms).
 */
function hostClocks(): { monotonic: bigint; boottime: bigint } {
  const own = ownOffsets();
  const [secs, frac] = readFileSync('/proc/uptime', 'utf8').split(' ')[0]!.split('.');
  const boottime = BigInt(secs!) * NS + BigInt((frac ?? '0').padEnd(9, '0').slice(0, 9));
  return { monotonic: process.hrtime.bigint() - own.monotonic, boottime: boottime - own.boottime };
}

/**
 * Offsets for the restored jail's time namespace, or undefined when this
 * host's clocks are not behind the image's (the jail then sees them jump
 * forward by the time it was away, as after a suspend).
 */
export function clockOffsets(saved: Clocks | null): { monotonic: bigint; boottime: bigint } | undefined {
  if (!saved) return undefined;
  const now = hostClocks();
  const behind = (want: string, have: bigint): bigint => (BigInt(want) > have ? BigInt(want) - have : 0n);
  const offsets = { monotonic: behind(saved.monotonic, now.monotonic), boottime: behind(saved.boottime, now.boottime) };
  return offsets.monotonic || offsets.boottime ? offsets : undefined;
}

export function describeOffsets(o: { monotonic: bigint; boottime: bigint }): string {
  const s = (ns: bigint): string => `${(Number(ns) / 1e9).toFixed(3)} s`;
  return `this host's clocks are behind the image's: the jail runs in a new time namespace, CLOCK_MONOTONIC ${s(o.monotonic)} and CLOCK_BOOTTIME ${s(o.boottime)} ahead`;
}
