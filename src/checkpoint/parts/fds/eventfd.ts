/** eventfd: its counter and semaphore mode, from fdinfo; made again with eventfd2 and a write of the count. */
import { toHex, fromHex } from '../../../image/format.js';
import { sysOk } from '../../../native/fdio.js';
import { SYS } from '../../syscalls.js';
import { type FdKind, O_CLOEXEC, Unsaveable } from './kind.js';

const EFD_SEMAPHORE = 1;

function add(fd: number, n: bigint): void {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(n);
  sysOk('writing to an eventfd', SYS.write, fd, b, 8);
}

function take(fd: number): bigint {
  const b = Buffer.alloc(8);
  sysOk('reading an eventfd', SYS.read, fd, b, 8);
  return b.readBigUInt64LE();
}

/**
 * Whether the eventfd holding `count` (our duplicate `fd`, the jail frozen)
 * is in semaphore mode: with at least 2 counted, a read takes 1 in that mode
 * and everything otherwise. The count is made at least 2 first where it is
 * less and put back exactly after: no read here can block, and the jail
 * finds the counter as it left it.
 */
export function probeSemaphore(fd: number, count: bigint): boolean {
  const added = count >= 2n ? 0n : 2n - count;
  if (added) add(fd, added);
  const got = take(fd);
  const semaphore = got === 1n;
  // What is left: count + added - got; make it count again.
  const left = count + added - got;
  if (left < count) add(fd, count - left);
  for (let extra = left - count; extra > 0n; extra--) take(fd); // semaphore mode: one per read
  return semaphore;
}

export const eventfdKind: FdKind<'eventfd'> = {
  kind: 'eventfd',
  doc: { what: 'eventfd', how: 'counter and semaphore mode (from fdinfo; before Linux 6.5, the mode by a read of the frozen counter, put back as it was)' },
  match: (p) => p.link === 'anon_inode:[eventfd]',
  collect(p, ctx) {
    const count = /^eventfd-count:\s*([0-9a-f]+)$/m.exec(p.info);
    if (!count) return new Unsaveable('an eventfd whose fdinfo lacks its count', p.link);
    const value = BigInt(`0x${count[1]}`);
    const sem = /^eventfd-semaphore:\s*(\d)$/m.exec(p.info);
    // Before Linux 6.5 fdinfo does not say the mode: ask the description itself.
    const semaphore = sem ? sem[1] === '1' : probeSemaphore(ctx.grab(p), value);
    return { count: toHex(value), semaphore };
  },
  create(d) {
    const fd = sysOk('eventfd2', SYS.eventfd2, 0, O_CLOEXEC | (d.semaphore ? EFD_SEMAPHORE : 0));
    const count = fromHex(d.count);
    if (count > 0n) {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(count);
      sysOk('setting an eventfd counter', SYS.write, fd, b, 8);
    }
    return { fd };
  },
};
