/**
 * Well-known character devices that hold no state of their own, reopened by
 * their path: /dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom.
 * Any other device is state outside the jail (the external-state step).
 */
import { ImageError } from '../../../image/format.js';
import { sysOk } from '../../../native/fdio.js';
import { SYS } from '../../syscalls.js';
import { type FdKind, O_CLOEXEC, Unsaveable } from './kind.js';
import { statSync } from 'node:fs';

const WELL_KNOWN = new Set(['1:3', '1:5', '1:7', '1:8', '1:9']);
const AT_FDCWD = -100;

const rdevOf = (rdev: bigint): string => `${Number((rdev >> 8n) & 0xfffn)}:${Number((rdev & 0xffn) | ((rdev >> 12n) & 0xfff00n))}`;

export const chardevKind: FdKind<'chardev'> = {
  kind: 'chardev',
  doc: { what: '/dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom', how: 'reopened by path (other devices are external state)' },
  match: (p) => p.link.startsWith('/') && !!p.st?.isCharacterDevice(),
  collect(p) {
    const rdev = rdevOf(p.st!.rdev);
    if (!WELL_KNOWN.has(rdev)) return new Unsaveable(`${p.link} is a device (${rdev}) whose state vjail cannot save`, `${p.link}`);
    return { path: p.link, rdev };
  },
  check(d, where) {
    let st;
    try {
      st = statSync(d.path, { bigint: true });
    } catch {
      throw new ImageError(`${d.path} (${where}) is missing; it must exist to restore the image`);
    }
    if (!st.isCharacterDevice() || rdevOf(st.rdev) !== d.rdev) throw new ImageError(`${d.path} (${where}) is not device ${d.rdev} here`);
  },
  create(d, ctx) {
    const fd = sysOk(`opening ${d.path}`, SYS.openat, AT_FDCWD, Buffer.from(`/proc/${ctx.rootPid}/root${d.path}\0`), d.flags | O_CLOEXEC, 0);
    return { fd };
  },
};
