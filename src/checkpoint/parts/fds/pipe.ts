/**
 * Pipes and FIFOs, with the bytes queued in them. A pipe is saved when no
 * process outside the jail holds either end (else it leads outside: the
 * external-state step names it). Its queued bytes are read without being
 * consumed (tee into a pipe of our own) through a duplicate of a read end,
 * and kept in a blob. At restore one pipe is made per saved pipe, sized as
 * it was and filled with those bytes; each end's descriptions come from it.
 * An end no jailed process held is closed once the others are placed, as it
 * was. A FIFO is reopened by its path (both ways at first, so the open does
 * not wait for a partner), its bytes written back into it.
 */
import { ImageError, readBlob } from '../../../image/format.js';
import { pipePeek, sysOk } from '../../../native/fdio.js';
import { SYS } from '../../syscalls.js';
import type { CollectContext, CreateContext, FdKind, FdProbe } from './kind.js';
import { O_ACCMODE, O_CLOEXEC, O_NONBLOCK, O_RDONLY, O_RDWR, O_WRONLY, Unsaveable } from './kind.js';
import { statSync } from 'node:fs';

const F_SETPIPE_SZ = 1031;
const F_GETPIPE_SZ = 1032;
const AT_FDCWD = -100;
const PIPE_LINK = /^pipe:\[(\d+)\]$/;

/** Save the pipe `id` once: its capacity and queued bytes, read through a jailed read end if there is one. */
function savePipe(id: string, holders: FdProbe[], ctx: CollectContext): void {
  if (ctx.pipes.has(id)) return;
  const reader = holders.find((h) => (h.flags & O_ACCMODE) !== O_WRONLY) ?? holders[0]!;
  const fd = ctx.grab(reader);
  const capacity = sysOk('F_GETPIPE_SZ', SYS.fcntl, fd, F_GETPIPE_SZ, 0);
  // With no reader in the jail, nobody can ever read what is queued: nothing to keep.
  const data = (reader.flags & O_ACCMODE) !== O_WRONLY ? pipePeek(fd, capacity) : Buffer.alloc(0);
  ctx.pipes.set(id, { id, capacity, data: data.length ? ctx.writer.blob(data).file : null });
}

/** A new pipe of the saved one's capacity, holding its bytes. */
function makePipe(id: string, ctx: CreateContext): { read: number; write: number } {
  const saved = ctx.image.manifest.pipes.find((p) => p.id === id);
  if (!saved) throw new ImageError(`${ctx.image.dir} has an invalid manifest: pipe ${id} is not among its pipes`);
  const ends = Buffer.alloc(8);
  sysOk('pipe2', SYS.pipe2, ends, O_CLOEXEC | O_NONBLOCK);
  const read = ends.readInt32LE(0);
  const write = ends.readInt32LE(4);
  ctx.closeLater(read);
  ctx.closeLater(write);
  if (sysOk('F_GETPIPE_SZ', SYS.fcntl, write, F_GETPIPE_SZ, 0) !== saved.capacity) {
    sysOk(`sizing pipe ${id} to ${saved.capacity} bytes (F_SETPIPE_SZ)`, SYS.fcntl, write, F_SETPIPE_SZ, saved.capacity);
  }
  if (saved.data) fill(write, readBlob(ctx.image, saved.data), `pipe ${id}`);
  return { read, write };
}

function fill(fd: number, data: Buffer, what: string): void {
  for (let off = 0; off < data.length; ) {
    const chunk = data.subarray(off);
    const n = sysOk(`refilling ${what}`, SYS.write, fd, chunk, chunk.length);
    if (n <= 0) throw new ImageError(`${what} took only ${off} of its ${data.length} queued bytes back`);
    off += n;
  }
}

/** Another description of the same pipe end (a reopen through /proc/self/fd), for the second and later. */
function reopen(fd: number, flags: number): number {
  return sysOk('reopening a pipe end', SYS.openat, AT_FDCWD, Buffer.from(`/proc/self/fd/${fd}\0`), (flags & O_ACCMODE) | O_CLOEXEC | O_NONBLOCK, 0);
}

export const pipeKind: FdKind<'pipe'> = {
  kind: 'pipe',
  doc: { what: 'pipes with every end inside the jail', how: 'capacity and queued bytes (read without consuming them); ends shared as they were; an end no jailed process held is closed again' },
  match: (p) => PIPE_LINK.test(p.link),
  collect(p, ctx) {
    const outside = ctx.heldOutside(p.link);
    if (outside) {
      const stream = ctx.stdioOf(p);
      const what = stream === undefined ? 'a pipe' : `the jail's standard ${['input', 'output', 'error'][stream]}, a pipe`;
      return new Unsaveable(`${what} shared with ${outside}, outside the jail`, p.link);
    }
    const id = PIPE_LINK.exec(p.link)![1]!;
    savePipe(id, ctx.all.filter((h) => h.link === p.link), ctx);
    return { pipe: id, end: (p.flags & O_ACCMODE) === O_WRONLY ? 'write' : 'read' };
  },
  create(d, ctx) {
    const ends = ctx.once(`pipe:${d.pipe}`, () => makePipe(d.pipe, ctx));
    const fd = d.end === 'read' ? ends.read : ends.write;
    const again = ctx.once(`pipe:${d.pipe}:${d.end}:uses`, () => ({ n: 0 }));
    return { fd: again.n++ === 0 ? fd : reopen(fd, d.end === 'read' ? O_RDONLY : O_WRONLY) };
  },
};

export const fifoKind: FdKind<'fifo'> = {
  kind: 'fifo',
  doc: { what: 'FIFOs no process outside the jail has open', how: 'reopened by path with their queued bytes' },
  match: (p) => p.link.startsWith('/') && !!p.st?.isFIFO(),
  collect(p, ctx) {
    const id = String(p.st!.ino);
    const same = ctx.all.filter((h) => h.st?.isFIFO() && h.st.ino === p.st!.ino && h.st.dev === p.st!.dev);
    const outside = ctx.heldOutside(`fifo:${p.st!.dev}:${id}`);
    if (outside) return new Unsaveable(`FIFO ${p.link}, also open in ${outside} outside the jail`, p.link);
    savePipe(id, same, ctx);
    return { path: p.link, pipe: id };
  },
  check(d, where, _image, _inherit, root) {
    let isFifo = false;
    try {
      isFifo = statSync(`${root}${d.path}`).isFIFO();
    } catch {
      throw new ImageError(`the FIFO ${d.path} (${where}) is missing; it must exist to restore the image`);
    }
    if (!isFifo) throw new ImageError(`${d.path} (${where}) is no longer a FIFO`);
  },
  create(d, ctx) {
    // Open both ways first: an open for one direction alone would wait for a partner.
    const anchor = ctx.once(`fifo:${d.pipe}`, () => {
      const fd = sysOk(`opening the FIFO ${d.path}`, SYS.openat, AT_FDCWD, Buffer.from(`/proc/${ctx.rootPid}/root${d.path}\0`), O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);
      ctx.closeLater(fd);
      const saved = ctx.image.manifest.pipes.find((p) => p.id === d.pipe);
      if (saved && sysOk('F_GETPIPE_SZ', SYS.fcntl, fd, F_GETPIPE_SZ, 0) !== saved.capacity) {
        sysOk(`sizing the FIFO ${d.path}`, SYS.fcntl, fd, F_SETPIPE_SZ, saved.capacity);
      }
      if (saved?.data) fill(fd, readBlob(ctx.image, saved.data), `the FIFO ${d.path}`);
      return fd;
    });
    return { fd: reopen(anchor, d.flags) };
  },
};
