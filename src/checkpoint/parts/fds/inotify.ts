/**
 * inotify: its watches, each by watch descriptor, mask and path. fdinfo
 * names a watched inode by a file handle; opened (open_by_handle_at, on a
 * mount of its file system) it gives the path, which must still lead to the
 * same inode from inside the jail. Events queued and not yet read cannot be
 * made again: such an instance is refused.
 *
 * Restore adds the watches in order of watch descriptor to a new instance
 * (descriptors are handed out in increasing order), with a watch on a file
 * of our own in every gap, removed afterwards (with the IN_IGNORED events
 * their removal queues): each watch gets its number back. Events on the
 * watched files before the restored jail resumes are not reported, as for
 * any time the jail was away.
 */
import { closeSync, lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageError } from '../../../image/format.js';
import { sys, sysOk } from '../../../native/fdio.js';
import { SYS } from '../../syscalls.js';
import { type FdKind, O_CLOEXEC, O_NONBLOCK, O_PATH, Unsaveable } from './kind.js';

const FIONREAD = 0x541b;
const AT_FDCWD = -100;
const IN_DONT_FOLLOW = 0x02000000;
const IN_ATTRIB = 0x4;
const EAGAIN = 11n;
const WATCH = /^inotify wd:([0-9a-f]+) ino:([0-9a-f]+) sdev:([0-9a-f]+) mask:([0-9a-f]+) \S+ fhandle-bytes:([0-9a-f]+) fhandle-type:([0-9a-f]+) f_handle:([0-9a-f]+)$/gm;

/** Mount points (as we see them) of the file system whose kernel device number is `sdev`. */
function mountsOf(sdev: number): string[] {
  const dev = `${sdev >>> 20}:${sdev & 0xfffff}`;
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f[2] === dev) out.push(f[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  }
  return out;
}

/** The path of the inode a file handle names, as we see it, through one of its file system's mounts; null if none leads to it. */
function pathOf(sdev: number, type: number, handle: Buffer): string | null {
  const fh = Buffer.alloc(8 + handle.length);
  fh.writeUInt32LE(handle.length, 0);
  fh.writeInt32LE(type, 4);
  handle.copy(fh, 8);
  for (const mount of mountsOf(sdev)) {
    // Not O_PATH: open_by_handle_at wants a descriptor it can fdget().
    const mfd = sys(SYS.openat, AT_FDCWD, Buffer.from(`${mount}\0`), O_NONBLOCK | O_CLOEXEC, 0);
    if (mfd < 0n) continue;
    const fd = sys(SYS.open_by_handle_at, mfd, fh, O_PATH | O_CLOEXEC);
    closeSync(Number(mfd));
    if (fd < 0n) continue;
    try {
      const path = readlinkSync(`/proc/self/fd/${fd}`);
      if (path.startsWith('/') && !path.endsWith(' (deleted)')) return path;
    } finally {
      closeSync(Number(fd));
    }
  }
  return null;
}

export const inotifyKind: FdKind<'inotify'> = {
  kind: 'inotify',
  doc: { what: 'inotify', how: 'watches by path and mask with the same watch descriptors; refused with events queued' },
  match: (p) => p.link === 'anon_inode:inotify',
  collect(p, ctx) {
    const queued = Buffer.alloc(4);
    sysOk('FIONREAD on an inotify instance', SYS.ioctl, ctx.grab(p), FIONREAD, queued);
    if (queued.readInt32LE(0) > 0) return new Unsaveable(`an inotify instance with ${queued.readInt32LE(0)} bytes of events not yet read (they cannot be made again)`, p.link);
    const watches = [];
    for (const m of p.info.matchAll(WATCH)) {
      const wd = parseInt(m[1]!, 16);
      const ino = BigInt(`0x${m[2]}`);
      const handle = Buffer.from(m[7]!, 'hex');
      const path = pathOf(parseInt(m[3]!, 16), parseInt(m[6]!, 16), handle.subarray(0, parseInt(m[5]!, 16)));
      let st;
      try {
        st = path === null ? null : lstatSync(`/proc/${p.pid}/root${path}`, { bigint: true });
      } catch {
        st = null;
      }
      if (path === null || !st || st.ino !== ino) return new Unsaveable(`an inotify watch (wd ${wd}) on inode ${ino}, which no path in the jail leads to`, p.link);
      watches.push({ wd, path, mask: parseInt(m[4]!, 16), symlink: st.isSymbolicLink() });
    }
    if (/^inotify /m.test(p.info) && watches.length !== (p.info.match(/^inotify /gm) ?? []).length) {
      return new Unsaveable('an inotify instance whose fdinfo this kernel writes differently (watches not understood)', p.link);
    }
    return { watches };
  },
  check(d, where, _image, _inherit, root) {
    for (const w of d.watches) {
      try {
        lstatSync(`${root}${w.path}`);
      } catch {
        throw new ImageError(`${w.path} (watched by inotify, ${where}) is missing; it must exist to restore the image`);
      }
    }
  },
  create(d, ctx) {
    const fd = sysOk('inotify_init1', SYS.inotify_init1, O_CLOEXEC | O_NONBLOCK);
    const watches = [...d.watches].sort((a, b) => a.wd - b.wd);
    const gaps: number[] = [];
    const dir = watches.length ? mkdtempSync(join(tmpdir(), 'vjail-inotify-')) : null;
    try {
      let next = 1;
      for (const w of watches) {
        for (; next < w.wd; next++) {
          const file = join(dir!, String(next));
          writeFileSync(file, '');
          gaps.push(sysOk('a placeholder inotify watch', SYS.inotify_add_watch, fd, Buffer.from(`${file}\0`), IN_ATTRIB));
        }
        const got = sysOk(`inotify_add_watch(${w.path})`, SYS.inotify_add_watch, fd, Buffer.from(`/proc/${ctx.rootPid}/root${w.path}\0`), w.mask | (w.symlink ? IN_DONT_FOLLOW : 0));
        if (got !== w.wd) throw new ImageError(`the inotify watch on ${w.path} came back as watch descriptor ${got}, not ${w.wd} (is it the same file as another watch's now?)`);
        next = w.wd + 1;
      }
      for (const g of gaps) sysOk('removing a placeholder inotify watch', SYS.inotify_rm_watch, fd, g);
      // Their removal queued IN_IGNORED events: read them away.
      const buf = Buffer.alloc(65536);
      for (;;) {
        const r = sys(SYS.read, fd, buf, buf.length);
        if (r === -EAGAIN) break;
        if (r <= 0n) throw new ImageError(`reading placeholder events from a new inotify instance failed (${r})`);
      }
    } catch (e) {
      closeSync(fd);
      throw e;
    } finally {
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
    return { fd };
  },
};
