/** signalfd: the signals it takes (fdinfo `sigmask:`), made again with signalfd4. */
import { fromHex, toHex } from '../../../image/format.js';
import { sysOk } from '../../../native/fdio.js';
import { SYS } from '../../syscalls.js';
import { type FdKind, O_CLOEXEC, Unsaveable } from './kind.js';

export const signalfdKind: FdKind<'signalfd'> = {
  kind: 'signalfd',
  doc: { what: 'signalfd', how: 'its mask' },
  match: (p) => p.link === 'anon_inode:[signalfd]',
  collect(p) {
    const m = /^sigmask:\s*([0-9a-f]+)$/m.exec(p.info);
    if (!m) return new Unsaveable('a signalfd whose fdinfo lacks its mask', p.link);
    return { mask: toHex(BigInt(`0x${m[1]}`)) };
  },
  create(d) {
    const mask = Buffer.alloc(8);
    mask.writeBigUInt64LE(fromHex(d.mask));
    return { fd: sysOk('signalfd4', SYS.signalfd4, -1, mask, 8, O_CLOEXEC) };
  },
};
