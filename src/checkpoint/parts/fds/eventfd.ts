/** eventfd: its counter and semaphore mode, from fdinfo; made again with eventfd2 and a write of the count. */
import { toHex, fromHex } from '../../../image/format.js';
import { sysOk } from '../../../native/fdio.js';
import { SYS } from '../../syscalls.js';
import { type FdKind, O_CLOEXEC, Unsaveable } from './kind.js';

const EFD_SEMAPHORE = 1;

export const eventfdKind: FdKind<'eventfd'> = {
  kind: 'eventfd',
  doc: { what: 'eventfd', how: 'counter and semaphore mode (from fdinfo)' },
  match: (p) => p.link === 'anon_inode:[eventfd]',
  collect(p) {
    const count = /^eventfd-count:\s*([0-9a-f]+)$/m.exec(p.info);
    const sem = /^eventfd-semaphore:\s*(\d)$/m.exec(p.info);
    if (!count || !sem) return new Unsaveable('an eventfd whose fdinfo lacks its count or mode (a kernel before 6.5?)', p.link);
    return { count: toHex(BigInt(`0x${count[1]}`)), semaphore: sem[1] === '1' };
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
