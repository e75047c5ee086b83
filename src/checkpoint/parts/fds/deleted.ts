/**
 * Regular files deleted while open (`/path (deleted)`, no links left): their
 * contents are saved (filedata.ts) and made again unlinked: an O_TMPFILE in
 * the old directory as the restored jail sees it if it is still there, else
 * in the jail's /tmp (else a file made there and unlinked at once), then
 * each description opened again on it with its flags and offset.
 */
import { dirname } from 'node:path';
import { fromHex, toHex } from '../../../image/format.js';
import { sys, sysOk } from '../../../native/fdio.js';
import { SYS } from '../../syscalls.js';
import { makeSavedFile, openAgain, saveFile } from './filedata.js';
import { type FdKind, O_CLOEXEC, O_RDWR } from './kind.js';
import { unlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

const AT_FDCWD = -100;
const O_CREAT = 0o100;
const O_EXCL = 0o200;
const O_TMPFILE = 0o20200000;
const SUFFIX = ' (deleted)';

/** An unlinked file in `dir` (our path of a directory as the jail sees it), or a negative errno. */
function tmpfileIn(dir: string): number {
  return Number(sys(SYS.openat, AT_FDCWD, Buffer.from(`${dir}\0`), O_TMPFILE | O_RDWR | O_CLOEXEC, 0o600));
}

export const deletedKind: FdKind<'deleted'> = {
  kind: 'deleted',
  doc: { what: 'files deleted while open', how: "contents, made again unlinked (O_TMPFILE in the old directory, else the jail's /tmp), flags and offset" },
  match: (p) => p.link.startsWith('/') && p.link.endsWith(SUFFIX) && !!p.st?.isFile() && p.st.nlink === 0n,
  collect(p, ctx) {
    return { path: p.link.slice(0, -SUFFIX.length), file: saveFile(p.pid, p.fd, p.st!, ctx), pos: toHex(p.pos) };
  },
  create(d, ctx) {
    const root = `/proc/${ctx.rootPid}/root`;
    const fd = makeSavedFile(d.file, ctx, () => {
      for (const dir of [dirname(d.path), '/tmp']) {
        const fd = tmpfileIn(`${root}${dir}`);
        if (fd >= 0) return fd;
      }
      // No O_TMPFILE here (or no such directory): a named file, unlinked at once.
      const path = `${root}/tmp/.vjail-deleted-${randomBytes(6).toString('hex')}`;
      const fd = sysOk(`making a file in place of ${d.path} (deleted)`, SYS.openat, AT_FDCWD, Buffer.from(`${path}\0`), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o600);
      unlinkSync(path);
      return fd;
    });
    return { fd: openAgain(fd, d.flags, fromHex(d.pos)) };
  },
};
