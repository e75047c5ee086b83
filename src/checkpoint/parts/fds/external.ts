/**
 * State the image could not hold, saved only with `--external warn`: at
 * restore the user stands a descriptor of their own in for it with
 * `--inherit-fd N:KEY` (as CRIU's option of that name), or the restore is
 * refused before anything starts.
 */
import { ImageError } from '../../../image/format.js';
import { sysOk } from '../../../native/fdio.js';
import { SYS } from '../../syscalls.js';
import { type FdKind, Unsaveable } from './kind.js';

const F_DUPFD_CLOEXEC = 1030;

export const externalKind: FdKind<'external'> = {
  kind: 'external',
  doc: { what: 'anything left out with `--external warn`', how: 'restore needs `--inherit-fd FD:KEY` to stand a descriptor in for it, else it refuses before anything starts' },
  match: () => false, // made by the external-state step, never collected as such
  collect: (p) => new Unsaveable('external', p.link),
  check(d, where, image, inherit) {
    if (!inherit.has(d.key)) {
      throw new ImageError(`${image.dir} was saved without ${d.key} (${where}: ${d.reason}); give --inherit-fd N:${d.key} to stand descriptor N of yours in for it`);
    }
  },
  create: (d, ctx) => ({ fd: sysOk(`duplicating the descriptor given for ${d.key}`, SYS.fcntl, ctx.inherit.get(d.key)!, F_DUPFD_CLOEXEC, 0) }),
};
