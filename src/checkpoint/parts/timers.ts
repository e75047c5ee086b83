/**
 * Timers of a process: the three interval timers (setitimer) and its POSIX
 * timers (timer_create). Collected by getitimer, timer_gettime and
 * timer_getoverrun run inside the process, with /proc/PID/timers for what
 * only the kernel's list shows (IDs, clock, sigevent). Restored by the
 * same calls in reverse.
 *
 * Timer IDs must come back the same: programs keep them. The kernel hands
 * a process's timer IDs out in order from 0 (never reusing one while the
 * process lives), so every ID up to the highest is created in order, the
 * ones that were deleted as placeholders, which are deleted again after.
 *
 * Clocks: a timer on CLOCK_MONOTONIC, BOOTTIME or a CPU-time clock keeps
 * its remaining time (the restored jail's time namespace keeps those clocks
 * from going back, parts/clocks.ts); one on a wall clock (REALTIME, TAI,
 * REALTIME_ALARM) keeps its absolute expiry, as the wall clock went on
 * while the process was away.
 */
import { readFileSync } from 'node:fs';
import { type LiveProcess, type Timers, fromHex, toHex } from '../../image/format.js';
import { CheckpointUnsupported } from '../errors.js';
import { type Tracee, TraceeError } from '../tracee.js';
import { SYS } from '../syscalls.js';
import type { Scratch } from './memory.js';

const ITIMERS = ['real', 'virtual', 'prof'] as const;
const CLOCK_REALTIME = 0;
const CLOCK_MONOTONIC = 1;
const CLOCK_REALTIME_ALARM = 8;
const CLOCK_TAI = 11;
/** Wall clocks: their timers keep the absolute expiry. REALTIME_ALARM is read as REALTIME. */
const WALL = new Map([[CLOCK_REALTIME, CLOCK_REALTIME], [CLOCK_REALTIME_ALARM, CLOCK_REALTIME], [CLOCK_TAI, CLOCK_TAI]]);
const SIGEV_NONE = 1;
const SIGEV_THREAD_ID = 4;
/** As /proc/PID/timers names sigev_notify without SIGEV_THREAD_ID. */
const NOTIFY_NAMES = ['signal', 'none', 'thread'];
const TIMER_ABSTIME = 1;
const NS = 1_000_000_000n;
const US = 1_000_000n;

type PosixTimer = Timers['posix'][number];

/** One entry of /proc/PID/timers. */
interface Listed {
  id: number;
  signal: number;
  value: bigint;
  notify: number;
  target: number;
  clock: number;
}

function listTimers(pid: number): Listed[] {
  const out: Listed[] = [];
  for (const block of readFileSync(`/proc/${pid}/timers`, 'utf8').split(/^(?=ID:)/m)) {
    const id = /^ID:\s*(\d+)$/m.exec(block);
    const sig = /^signal:\s*(\d+)\/([0-9a-f]+)$/m.exec(block);
    const notify = /^notify:\s*(\w+)\/(pid|tid)\.(\d+)$/m.exec(block);
    const clock = /^ClockID:\s*(-?\d+)$/m.exec(block);
    if (!id) continue;
    if (!sig || !notify || !clock || !NOTIFY_NAMES.includes(notify[1]!)) throw new TraceeError(`/proc/${pid}/timers is not as expected: ${block.trim()}`);
    out.push({
      id: Number(id[1]),
      signal: Number(sig[1]),
      value: BigInt(`0x${sig[2]}`),
      notify: NOTIFY_NAMES.indexOf(notify[1]!) | (notify[2] === 'tid' ? SIGEV_THREAD_ID : 0),
      target: Number(notify[3]),
      clock: Number(clock[1]),
    });
  }
  return out.sort((a, b) => a.id - b.id);
}

/** The PID a CPU-time clock ID names (0: the caller), as clock_getcpuclockid encodes it. */
const cpuClockPid = (clock: number): number => ~(clock >> 3);
const cpuClock = (clock: number, pid: number): number => (~pid << 3) | (clock & 7);

const timespecNs = (b: Buffer, off: number): bigint => b.readBigInt64LE(off) * NS + b.readBigInt64LE(off + 8);

/**
 * `jailTid` turns a TID of the process (ours) into the jail's; without a
 * PID namespace they are the same.
 */
export async function collectTimers(t: Tracee, scratch: Scratch, pidNs: boolean, jailTid: (tid: number) => number, warn: (line: string) => void): Promise<Timers> {
  const itimers: Timers['itimers'] = [];
  for (const [which, name] of ITIMERS.entries()) {
    await t.syscallOk(`getitimer(${name})`, SYS.getitimer, which, scratch.addr);
    const b = t.read(scratch.addr, 32);
    const us = (off: number): bigint => b.readBigInt64LE(off) * US + b.readBigInt64LE(off + 8);
    // A periodic ITIMER_REAL whose SIGALRM is queued reads 0 until that is taken (the kernel re-arms it
    // then, from the interval): the interval alone is kept, and the queued signal does the rest.
    const [value, interval] = [us(16), us(0)];
    if (value !== 0n || interval !== 0n) itimers.push({ which: name, value: String(value), interval: String(interval) });
  }
  const posix: PosixTimer[] = [];
  for (const l of listTimers(t.pid)) {
    const clock = l.clock;
    if (clock < 0) {
      const of = cpuClockPid(clock);
      // Without a PID namespace PIDs change: only the process's own clock can be named again.
      if (of !== 0 && !pidNs && of !== t.pid) {
        throw new CheckpointUnsupported(`POSIX timer ${l.id} of process ${t.pid} runs on the CPU-time clock of process ${of}; run the jail with "vjail run --pid-ns" to checkpoint it (PIDs are kept)`);
      }
    }
    await t.syscallOk(`timer_gettime(${l.id})`, SYS.timer_gettime, l.id, scratch.addr);
    const its = t.read(scratch.addr, 32);
    const interval = timespecNs(its, 0);
    const remaining = timespecNs(its, 16);
    const overrun = Number(await t.syscallOk(`timer_getoverrun(${l.id})`, SYS.timer_getoverrun, l.id));
    let expiry: string | null = null;
    const wall = WALL.get(clock);
    if (wall !== undefined && remaining !== 0n) {
      await t.syscallOk('clock_gettime', SYS.clock_gettime, wall, scratch.addr);
      expiry = String(timespecNs(t.read(scratch.addr, 16), 0) + remaining);
    }
    if (overrun) warn(`POSIX timer ${l.id} of process ${t.pid}: the overrun count of its last signal (${overrun}) cannot be set again; after restore timer_getoverrun returns 0 until it next expires`);
    posix.push({
      id: l.id,
      clock,
      notify: l.notify,
      signal: l.signal,
      value: toHex(l.value),
      tid: l.notify & SIGEV_THREAD_ID ? jailTid(l.target) : 0,
      remaining: String(remaining),
      interval: String(interval),
      expiry,
      overrun,
    });
  }
  return { itimers, posix };
}

/**
 * Run inside the process once all its threads exist (a SIGEV_THREAD_ID
 * timer names one). `nsPid` is its PID as it sees it now: a new one
 * without a PID namespace, where the image's PID stands for it.
 */
export async function restoreTimers(t: Tracee, scratch: Scratch, p: Pick<LiveProcess, 'pid' | 'timers'>, nsPid: number): Promise<void> {
  const own = (id: number): number => (id === p.pid ? nsPid : id);
  for (const it of p.timers.itimers) {
    const b = Buffer.alloc(32);
    const put = (off: number, us: bigint): void => {
      b.writeBigInt64LE(us / US, off);
      b.writeBigInt64LE(us % US, off + 8);
    };
    put(0, BigInt(it.interval));
    // setitimer cannot keep an interval without a value: that ITIMER_REAL goes off one interval from now.
    put(16, it.which === 'real' && it.value === '0' ? BigInt(it.interval) : BigInt(it.value));
    t.write(scratch.addr, b);
    await t.syscallOk(`setitimer(${it.which})`, SYS.setitimer, ITIMERS.indexOf(it.which), scratch.addr, 0);
  }
  const byId = new Map(p.timers.posix.map((x) => [x.id, x]));
  const last = Math.max(-1, ...byId.keys());
  const placeholders: number[] = [];
  for (let id = 0; id <= last; id++) {
    const x = byId.get(id);
    const ev = Buffer.alloc(64);
    let clock = CLOCK_MONOTONIC;
    if (x) {
      ev.writeBigUInt64LE(fromHex(x.value), 0);
      ev.writeInt32LE(x.signal, 8);
      ev.writeInt32LE(x.notify, 12);
      ev.writeInt32LE(own(x.tid), 16);
      clock = x.clock < 0 && cpuClockPid(x.clock) === p.pid ? cpuClock(x.clock, nsPid) : x.clock;
    } else {
      ev.writeInt32LE(SIGEV_NONE, 12);
      placeholders.push(id);
    }
    t.write(scratch.addr, ev);
    const out = scratch.addr + 64n;
    await t.syscallOk(`timer_create of POSIX timer ${id} (clock ${clock})`, SYS.timer_create, clock, scratch.addr, out);
    const got = t.read(out, 4).readInt32LE(0);
    if (got !== id) throw new TraceeError(`timer_create in process ${p.pid} made POSIX timer ${got}, not ${id}: this kernel does not hand out timer IDs in order, so they cannot be kept`);
  }
  for (const id of placeholders) await t.syscallOk(`timer_delete of placeholder timer ${id}`, SYS.timer_delete, id);
  for (const x of p.timers.posix) {
    if (x.remaining === '0') continue;
    const abs = x.expiry !== null;
    const value = BigInt(abs ? x.expiry! : x.remaining);
    const its = Buffer.alloc(32);
    its.writeBigInt64LE(BigInt(x.interval) / NS, 0);
    its.writeBigInt64LE(BigInt(x.interval) % NS, 8);
    its.writeBigInt64LE(value / NS, 16);
    its.writeBigInt64LE(value % NS, 24);
    t.write(scratch.addr, its);
    await t.syscallOk(`timer_settime of POSIX timer ${x.id}`, SYS.timer_settime, x.id, abs ? TIMER_ABSTIME : 0, scratch.addr, 0);
  }
}
