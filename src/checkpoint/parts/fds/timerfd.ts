/**
 * timerfd: clock, interval, remaining time, and expirations counted but not
 * read (fdinfo `ticks`, set again with TFD_IOC_SET_TICKS).
 *
 * A relative timer keeps its remaining time: it is the same in every time
 * namespace, and counts as the jail's own clocks do across a restore (they
 * continue from the checkpoint). An absolute one (TFD_TIMER_ABSTIME) keeps
 * its deadline on the jail's clock: at the checkpoint it is our clock's now
 * plus the remaining time, moved into the jail's time namespace; at restore
 * it is moved from the restored jail's namespace into ours (the timer is
 * made here, and the kernel reads an absolute time in the namespace of who
 * sets it). CLOCK_REALTIME has no namespace offset.
 */
import { readFileSync } from 'node:fs';
import { fromHex, toHex } from '../../../image/format.js';
import { sysOk } from '../../../native/fdio.js';
import { SYS } from '../../syscalls.js';
import { timensOffsets } from '../clocks.js';
import { type FdKind, O_CLOEXEC, Unsaveable } from './kind.js';

const NS = 1_000_000_000n;
const TFD_TIMER_ABSTIME = 1;
const TFD_TIMER_CANCEL_ON_SET = 2;
const TFD_IOC_SET_TICKS = 0x40085400;
const CLOCK_MONOTONIC = 1;
const CLOCK_BOOTTIME = 7;
const CLOCK_BOOTTIME_ALARM = 9;

/** A clock's offset in the time namespace of `pid`'s children. */
function offsetOf(clock: number, pid: number | 'self'): bigint {
  const o = timensOffsets(pid);
  if (clock === CLOCK_MONOTONIC) return o.monotonic;
  if (clock === CLOCK_BOOTTIME || clock === CLOCK_BOOTTIME_ALARM) return o.boottime;
  return 0n;
}

/** `clock` as this process reads it now, in ns. */
function now(clock: number): bigint {
  const ts = Buffer.alloc(16);
  sysOk('clock_gettime', SYS.clock_gettime, clock, ts);
  return ts.readBigInt64LE(0) * NS + ts.readBigInt64LE(8);
}

const timespecs = (interval: bigint, value: bigint): Buffer => {
  const b = Buffer.alloc(32);
  b.writeBigInt64LE(interval / NS, 0);
  b.writeBigInt64LE(interval % NS, 8);
  b.writeBigInt64LE(value / NS, 16);
  b.writeBigInt64LE(value % NS, 24);
  return b;
};

export const timerfdKind: FdKind<'timerfd'> = {
  kind: 'timerfd',
  doc: { what: 'timerfd', how: "clock, relative remaining time or absolute deadline on the jail's clock, interval, unread expirations" },
  match: (p) => p.link === 'anon_inode:[timerfd]',
  collect(p, ctx) {
    const clockM = /^clockid:\s*(\d+)$/m.exec(p.info);
    if (!clockM) return new Unsaveable('a timerfd whose fdinfo lacks its clock', p.link);
    const clock = Number(clockM[1]);
    // timerfd_gettime moves a periodic timer that expired past its missed periods into its
    // count, as a read would before counting (nothing the program can tell): only then does
    // it show the next expiry. Read between two readings of the clock, the deadline of an
    // absolute timer is exact to their gap.
    const cur = Buffer.alloc(32);
    const fd = ctx.grab(p);
    const before = now(clock);
    sysOk('timerfd_gettime', SYS.timerfd_gettime, fd, cur);
    const after = now(clock);
    const info = readFileSync(`/proc/${p.pid}/fdinfo/${p.fd}`, 'utf8');
    const ticks = /^ticks:\s*(\d+)$/m.exec(info);
    const flags = /^settime flags:\s*([0-7]+)$/m.exec(info);
    const interval = cur.readBigInt64LE(0) * NS + cur.readBigInt64LE(8);
    const remaining = cur.readBigInt64LE(16) * NS + cur.readBigInt64LE(24);
    if (!ticks || !flags) return new Unsaveable('a timerfd whose fdinfo lacks its settings', p.link);
    const settime = parseInt(flags[1]!, 8);
    const abstime = (settime & TFD_TIMER_ABSTIME) !== 0;
    const mid = (before + after) / 2n;
    const deadline = abstime && remaining > 0n ? mid + remaining - offsetOf(clock, 'self') + offsetOf(clock, p.pid) : null;
    return {
      clock, abstime, cancelOnSet: (settime & TFD_TIMER_CANCEL_ON_SET) !== 0,
      remaining: toHex(remaining), interval: toHex(interval), deadline: deadline === null ? null : toHex(deadline), ticks: toHex(BigInt(ticks[1]!)),
    };
  },
  create(d, ctx) {
    const fd = sysOk(`timerfd_create(clock ${d.clock})`, SYS.timerfd_create, d.clock, O_CLOEXEC);
    const interval = fromHex(d.interval);
    const remaining = fromHex(d.remaining);
    if (d.deadline !== null) {
      const at = fromHex(d.deadline) - offsetOf(d.clock, ctx.rootPid) + offsetOf(d.clock, 'self');
      const flags = TFD_TIMER_ABSTIME | (d.cancelOnSet ? TFD_TIMER_CANCEL_ON_SET : 0);
      sysOk('arming a timerfd (absolute)', SYS.timerfd_settime, fd, flags, timespecs(interval, at > 0n ? at : 1n), 0);
    } else if (remaining > 0n || interval > 0n) {
      sysOk('arming a timerfd', SYS.timerfd_settime, fd, 0, timespecs(interval, remaining), 0);
    }
    const ticks = fromHex(d.ticks);
    if (ticks > 0n) {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(ticks);
      sysOk('setting a timerfd\'s expirations (TFD_IOC_SET_TICKS)', SYS.ioctl, fd, TFD_IOC_SET_TICKS, b);
    }
    return { fd };
  },
};
