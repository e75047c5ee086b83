/**
 * memfds (`/memfd:NAME (deleted)`): name, contents (filedata.ts), seals and
 * the flags they were made with. MFD_ALLOW_SEALING shows as the absence of
 * F_SEAL_SEAL before anything was sealed; MFD_HUGETLB as the file system.
 * Close-on-exec is each descriptor's own and comes back with it.
 */
import { statfsSync } from 'node:fs';
import { fromHex, toHex } from '../../../image/format.js';
import { sysOk } from '../../../native/fdio.js';
import { SYS } from '../../syscalls.js';
import { makeSavedFile, openAgain, saveFile } from './filedata.js';
import { type FdKind, Unsaveable } from './kind.js';

const F_ADD_SEALS = 1033;
const F_GET_SEALS = 1034;
const F_SEAL_SEAL = 0x1;
const MFD_CLOEXEC = 0x1;
const MFD_ALLOW_SEALING = 0x2;
const MFD_HUGETLB = 0x4;
const HUGETLBFS_MAGIC = 0x958458f6;
const LINK = /^\/memfd:(.*) \(deleted\)$/;

export const memfdKind: FdKind<'memfd'> = {
  kind: 'memfd',
  doc: { what: 'memfd', how: 'name, contents, seals, MFD_ALLOW_SEALING/HUGETLB, offset (a huge-page memfd holding data is refused)' },
  match: (p) => LINK.test(p.link) && !!p.st?.isFile(),
  collect(p, ctx) {
    const name = LINK.exec(p.link)![1]!;
    const hugetlb = Number(statfsSync(`/proc/${p.pid}/fd/${p.fd}`).type) === HUGETLBFS_MAGIC;
    // hugetlbfs files take no write(): their pages could only come back through a mapping.
    if (hugetlb && p.st!.size > 0n) return new Unsaveable(`memfd ${name} on huge pages holding data (not saved yet)`, p.link);
    const fd = ctx.grab(p);
    const seals = sysOk('F_GET_SEALS', SYS.fcntl, fd, F_GET_SEALS, 0);
    return { name, file: saveFile(p.pid, p.fd, p.st!, ctx), pos: toHex(p.pos), seals, sealing: seals !== F_SEAL_SEAL, hugetlb };
  },
  create(d, ctx) {
    const flags = MFD_CLOEXEC | (d.sealing ? MFD_ALLOW_SEALING : 0) | (d.hugetlb ? MFD_HUGETLB : 0);
    const fd = makeSavedFile(d.file, ctx, () => sysOk(`memfd_create(${d.name})`, SYS.memfd_create, Buffer.from(`${d.name}\0`), flags), (made) => {
      if (d.sealing && d.seals) sysOk(`sealing memfd ${d.name}`, SYS.fcntl, made, F_ADD_SEALS, d.seals);
    });
    return { fd: openAgain(fd, d.flags, fromHex(d.pos)) };
  },
};
