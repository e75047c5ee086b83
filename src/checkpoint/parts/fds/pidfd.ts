/**
 * pidfds (`anon_inode:[pidfd]`, fdinfo `Pid:` as we see it): one of a
 * process of the jail is saved by that process's PID in the image and made
 * again with pidfd_open on the restored process; one of a process outside
 * the jail leads outside (external state). Thread pidfds (PIDFD_THREAD)
 * are not saved yet.
 */
import { ImageError } from '../../../image/format.js';
import { sysOk } from '../../../native/fdio.js';
import { SYS } from '../../syscalls.js';
import { type FdKind, Unsaveable } from './kind.js';

const PIDFD_THREAD = 0o200; // O_EXCL

export const pidfdKind: FdKind<'pidfd'> = {
  kind: 'pidfd',
  doc: { what: 'pidfd', how: 'a process of the jail, pointing at the restored process; one outside the jail is external state' },
  match: (p) => p.link === 'anon_inode:[pidfd]',
  collect(p, ctx) {
    const m = /^Pid:\s*(-?\d+)$/m.exec(p.info);
    if (!m) return new Unsaveable('a pidfd whose fdinfo lacks its process', p.link);
    const pid = Number(m[1]);
    if (pid <= 0) return new Unsaveable('a pidfd of a process that has ended and been reaped', p.link);
    if (p.flags & PIDFD_THREAD) return new Unsaveable(`a pidfd of thread ${pid} (PIDFD_THREAD, not saved yet)`, p.link);
    const inImage = ctx.imagePidOf(pid);
    if (inImage === undefined) return new Unsaveable(`a pidfd of process ${pid}, outside the jail`, `pidfd:${pid}`);
    return { pid: inImage };
  },
  create(d, ctx) {
    const pid = ctx.hostPidOf(d.pid);
    if (pid === undefined) throw new ImageError(`${ctx.image.dir} has an invalid manifest: a pidfd of process ${d.pid}, which is not among its processes`);
    return { fd: sysOk(`pidfd_open of restored process ${d.pid}`, SYS.pidfd_open, pid, 0) };
  },
};
