/**
 * Shared-memory objects: memory that several mappings (of one process or of
 * several) share, kept in the image once, as one object per shmem inode or
 * deleted file, with every mapping naming it (docs/IMAGE.md, `sharedMemory`):
 *
 *   anon   MAP_SHARED|MAP_ANONYMOUS ("/dev/zero (deleted)" in maps)
 *   memfd  memfd_create's ("/memfd:NAME (deleted)"), shared or private
 *   file   a file on tmpfs mapped shared (POSIX shm: /dev/shm/NAME), or a
 *          deleted file ("PATH (deleted)"), shared or private
 *   sysv   a System V segment (sysvipc.ts finds and recreates those)
 *
 * Collected through /proc/PID/map_files (the object itself, holes skipped
 * with SEEK_DATA/SEEK_HOLE), which needs CAP_SYS_ADMIN or
 * CAP_CHECKPOINT_RESTORE; without it a shared anonymous mapping of one
 * process is saved as before version 5, and one shared by two is refused.
 *
 * Restored once, in the restorer before the process tree is forked from it
 * (stageObjects), so that every process inherits it: an anonymous object as
 * a staging mapping that each process duplicates into place (mremap with
 * old size 0 maps the same pages again), the others as a descriptor each
 * process maps; then each process lets go of both (releaseStaged).
 */
import { closeSync, constants, fchmodSync, fchownSync, fstatSync, ftruncateSync, openSync, readSync, statfsSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import {
  ImageError, type ImageWriter, type Mapping, type OpenedImage, PAGE_BUFFER_SIZE, PAGE_SIZE, type Pages, type SharedObject, fromHex, pageBuffer,
} from '../../image/format.js';
import { native } from '../../native.js';
import { sys } from '../../native/fdio.js';
import { type MapsEntry, readMaps, type Tracee, TraceeError } from '../tracee.js';
import { SYS } from '../syscalls.js';
import { pageIo } from '../pagecopy.js';
import { CheckpointUnsupported } from '../errors.js';
import { loadPageFile, type Scratch } from './memory.js';

const SHARED_ANON_NAME = '/dev/zero (deleted)';
const DELETED = ' (deleted)';
const TMPFS_MAGIC = 0x01021994;
const SEEK_DATA = 3;
const SEEK_HOLE = 4;
const ENXIO = 6;

const seek = (fd: number, off: number, whence: number): number => Number(sys(SYS.lseek, fd, off, whence));

export type ObjectKind = SharedObject['kind'];

/** What kind of object a line of /proc/PID/maps maps, if any. */
export function objectKindOf(e: MapsEntry): ObjectKind | null {
  const name = e.name;
  const shared = e.perms[3] === 's';
  if (!name?.startsWith('/')) return null;
  if (name === SHARED_ANON_NAME && shared) return 'anon';
  if (name.startsWith('/memfd:') && name.endsWith(DELETED)) return 'memfd';
  if (name.startsWith('/SYSV') && name.endsWith(DELETED) && shared) return 'sysv';
  if (name.endsWith(DELETED)) return 'file';
  if (shared && onTmpfs(name)) return 'file';
  return null;
}

function onTmpfs(path: string): boolean {
  try {
    return Number(statfsSync(path).type) === TMPFS_MAGIC;
  } catch {
    return false;
  }
}

/** The path /proc gives for the object behind a mapping: its file, opened anew. */
export const mapFilesPath = (pid: number | 'self', start: bigint, end: bigint): string => `/proc/${pid}/map_files/${start.toString(16)}-${end.toString(16)}`;

/**
 * Append the data of the file open at `fd` (of `size` bytes) to a page
 * file, skipping its holes; undefined when it has no data.
 */
export function saveFileData(image: ImageWriter, fd: number, size: number): Pages | undefined {
  let writer: ReturnType<ImageWriter['pageFile']> | undefined;
  for (let off = 0; off < size; ) {
    let data = seek(fd, off, SEEK_DATA);
    if (data === -ENXIO) break;
    if (data < 0) data = off; // no SEEK_DATA here: all of it is data
    data -= data % PAGE_SIZE;
    let hole = seek(fd, data, SEEK_HOLE);
    if (hole < 0) hole = size;
    hole = Math.min(size, Math.ceil(hole / PAGE_SIZE) * PAGE_SIZE);
    for (let at = data; at < hole; ) {
      const len = Math.min(PAGE_BUFFER_SIZE, Math.ceil((hole - at) / PAGE_SIZE) * PAGE_SIZE);
      const buf = pageBuffer().subarray(0, len);
      let got = 0;
      while (got < len) {
        const n = readSync(fd, buf, got, len - got, at + got);
        if (n === 0) break;
        got += n;
      }
      buf.fill(0, got); // the tail of the last page, past the end of the file
      writer ??= image.pageFile();
      writer.append(at / PAGE_SIZE, buf);
      at += len;
    }
    off = Math.max(hole, off + PAGE_SIZE);
  }
  return writer?.close();
}

const ZERO_PAGE = Buffer.alloc(PAGE_SIZE);

/**
 * The same for memory of ours at `addr` (an attach of our own, where
 * map_files is closed to us), read with process_vm_readv. Holes cannot be
 * told from data here: pages that are all zero are left out, which
 * restores them the same.
 */
export function saveOwnMemory(image: ImageWriter, addr: bigint, size: number): Pages | undefined {
  let writer: ReturnType<ImageWriter['pageFile']> | undefined;
  const total = Math.ceil(size / PAGE_SIZE) * PAGE_SIZE;
  for (let at = 0; at < total; ) {
    const len = Math.min(PAGE_BUFFER_SIZE, total - at);
    const buf = native().readMem(process.pid, addr + BigInt(at), len);
    for (let page = 0; page < len; ) {
      let end = page;
      while (end < len && !buf.subarray(end, end + PAGE_SIZE).equals(ZERO_PAGE)) end += PAGE_SIZE;
      if (end > page) {
        writer ??= image.pageFile();
        writer.append((at + page) / PAGE_SIZE, buf.subarray(page, end));
      }
      page = end + PAGE_SIZE;
    }
    at += len;
  }
  return writer?.close();
}

/**
 * The jail's shared-memory objects, each saved the first time a mapping of
 * it is seen. `sysv` objects are added by the System V collector first.
 */
export class SharedObjects {
  readonly list: SharedObject[] = [];
  private readonly byInode = new Map<string, number>();
  private readonly bySysvId = new Map<number, number>();
  /** Shared anonymous mappings saved the version 4 way (no map_files access): dev:inode → pid. */
  private readonly unprivileged = new Map<string, number>();

  constructor(
    private readonly image: ImageWriter,
    /** Whether the jail has an IPC namespace of its own, whose segments sysvipc.ts saved. */
    readonly sysvSaved: boolean,
  ) {}

  addSysv(o: Omit<Extract<SharedObject, { kind: 'sysv' }>, 'id'>): void {
    const id = this.list.length;
    this.list.push({ ...o, id });
    this.bySysvId.set(o.shmid, id);
  }

  /** The id of the object mapping `e` of process `pid` maps (saved now if new), or null if it maps none. */
  forMapping(pid: number, e: MapsEntry): number | null {
    const kind = objectKindOf(e);
    if (!kind) return null;
    const at = `0x${e.start.toString(16)}`;
    if (kind === 'sysv') {
      if (!this.sysvSaved) throw new CheckpointUnsupported(`process ${pid} has System V shared memory attached at ${at} (${e.name}), but the jail has no IPC namespace of its own to save it from; run it with --pid-ns`);
      const id = this.bySysvId.get(e.inode);
      if (id === undefined) throw new CheckpointUnsupported(`process ${pid} has System V segment ${e.inode} attached at ${at}, which the jail's IPC namespace does not list`);
      return id;
    }
    const key = `${e.dev}:${e.inode}`;
    const known = this.byInode.get(key);
    if (known !== undefined) return known;
    let fd: number;
    try {
      fd = openSync(mapFilesPath(pid, e.start, e.end), 'r');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (kind === 'anon' && (code === 'EPERM' || code === 'EACCES')) return this.unprivilegedAnon(pid, e, key);
      throw new CheckpointUnsupported(`the memory ${e.name} mapped at ${at} by process ${pid} cannot be read through /proc/${pid}/map_files (${code}); saving it needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE`);
    }
    try {
      const st = fstatSync(fd);
      const id = this.list.length;
      const pages = saveFileData(this.image, fd, st.size);
      const common = { id, size: st.size, ...(pages ? { pages } : {}) };
      const name = e.name!;
      const obj: SharedObject =
        kind === 'anon' ? { kind, ...common } :
        kind === 'memfd' ? { kind, ...common, name: name.slice('/memfd:'.length, -DELETED.length), seals: memfdSeals(fd) } :
        { kind: 'file', ...common, path: name.endsWith(DELETED) ? name.slice(0, -DELETED.length) : name, deleted: name.endsWith(DELETED), mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
      this.list.push(obj);
      this.byInode.set(key, id);
      return id;
    } finally {
      closeSync(fd);
    }
  }

  /** Without access to map_files: the mapping keeps its own pages, as in version 4, and may not be shared with another process. */
  private unprivilegedAnon(pid: number, e: MapsEntry, key: string): null {
    const other = this.unprivileged.get(key);
    if (other !== undefined && other !== pid) {
      throw new CheckpointUnsupported(`processes ${other} and ${pid} share anonymous memory at 0x${e.start.toString(16)}; saving it as one object needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE (/proc/PID/map_files)`);
    }
    this.unprivileged.set(key, pid);
    return null;
  }
}

const F_GET_SEALS = 1034;
const F_ADD_SEALS = 1033;
const F_SEAL_SEAL = 1;
const F_SEAL_EXEC = 0x20;

/** F_GET_SEALS of our own descriptor of the memfd (seals belong to the inode). */
function memfdSeals(fd: number): number {
  const r = sys(SYS.fcntl, fd, F_GET_SEALS);
  return r < 0n ? F_SEAL_SEAL : Number(r);
}

// ---- restore ---------------------------------------------------------------

/** What the restorer made, inherited by every process forked from it. */
export interface StagedObjects {
  /** Where each anonymous object is mapped whole, in every process. */
  anon: Map<number, bigint>;
  /** The descriptor of each memfd and file object, in every process. */
  fds: Map<number, number>;
  /** The ranges of the staging mappings, kept while a process's own memory is replaced. */
  ranges: { start: bigint; end: bigint }[];
  /** Deleted files re-created for the restore, unlinked once opened. */
  objects: Map<number, SharedObject>;
}

export const noStagedObjects = (): StagedObjects => ({ anon: new Map(), fds: new Map(), ranges: [], objects: new Map() });

const PROT_RW = 3;
const MAP_SHARED = 0x01;
const MAP_ANONYMOUS = 0x20;
const MAP_FIXED = 0x10;
const MAP_PRIVATE = 0x02;
const MAP_FIXED_NOREPLACE = 0x100000;
const MREMAP_MAYMOVE = 1;
const MREMAP_FIXED = 2;
const MFD_CLOEXEC = 1;
const MFD_ALLOW_SEALING = 2;
const AT_FDCWD = -100;
const O_RDWR = 2;
const O_CLOEXEC = 0o2000000;
const SHM_RDONLY = 0o10000;
const SHM_EXEC = 0o100000;
const roundUp = (n: number): bigint => BigInt(Math.ceil(n / PAGE_SIZE) * PAGE_SIZE);

/** Before anything is started: a POSIX shm file that exists here must hold what the image saved. */
export function checkObjects(image: OpenedImage): void {
  for (const o of image.manifest.sharedMemory) {
    if (o.kind !== 'file' || o.deleted) continue;
    let fd: number;
    try {
      fd = openSync(o.path, 'r');
    } catch {
      continue; // re-created with the saved contents
    }
    try {
      if (!sameContents(image, o, fd)) throw new ImageError(`${o.path} exists here with other contents than the image saved; remove it to restore the saved one, or keep it and do not restore`);
    } finally {
      closeSync(fd);
    }
  }
}

/** Does the file open at `fd` hold exactly the object's saved contents (zeros outside its saved pages)? Read in chunks. */
function sameContents(image: OpenedImage, o: SharedObject, fd: number): boolean {
  if (fstatSync(fd).size !== o.size) return false;
  const have = Buffer.alloc(PAGE_BUFFER_SIZE);
  const read = (at: number, len: number): Buffer => {
    let got = 0;
    while (got < len) {
      const n = readSync(fd, have, got, len - got, at + got);
      if (n === 0) break;
      got += n;
    }
    have.fill(0, got, len);
    return have.subarray(0, len);
  };
  const zeros = (from: number, to: number): boolean => {
    for (let at = from; at < to; at += PAGE_BUFFER_SIZE) {
      const len = Math.min(PAGE_BUFFER_SIZE, to - at);
      if (read(at, len).some((b) => b !== 0)) return false;
    }
    return true;
  };
  let same = true;
  let next = 0; // bytes below this were compared
  if (o.pages) {
    loadPageFile(image, o.pages, (page, buf) => {
      if (!same) return;
      const at = page * PAGE_SIZE;
      const len = Math.max(0, Math.min(buf.length, o.size - at));
      same = (at < next || zeros(next, at)) && read(at, len).equals(buf.subarray(0, len));
      next = Math.max(next, at + len);
    });
  }
  return same && zeros(next, o.size);
}

/** Write an object's saved pages into the file open at our descriptor `fd`. */
function fillFile(image: OpenedImage, o: SharedObject, fd: number): void {
  ftruncateSync(fd, o.size);
  if (!o.pages) return;
  loadPageFile(image, o.pages, (page, buf) => {
    const at = page * PAGE_SIZE;
    const len = Math.max(0, Math.min(buf.length, o.size - at));
    for (let off = 0; off < len; ) off += writeSync(fd, buf, off, len - off, at + off);
  });
}

/**
 * Make every object of the image (but `sysv` ones: sysvipc.ts) in the
 * restorer `root`, at addresses outside every mapping of the image.
 */
export async function stageObjects(root: Tracee, scratch: Scratch, image: OpenedImage, firstFd: number, warn: (line: string) => void): Promise<StagedObjects> {
  const staged = noStagedObjects();
  const withFd = image.manifest.sharedMemory.filter((o) => o.kind === 'memfd' || o.kind === 'file').length;
  if (withFd) await raiseFdLimit(root, scratch, firstFd + withFd);
  // Above every descriptor the image's processes hold and the descriptor handover's, which are placed later.
  const moveUp = async (fd: number): Promise<number> => {
    const to = Number(await root.syscallOk('moving a shared-memory object\'s descriptor', SYS.fcntl, fd, F_DUPFD_CLOEXEC, firstFd + staged.fds.size));
    await root.syscall(SYS.close, fd);
    return to;
  };
  const taken = image.manifest.processes.flatMap((p) => (p.state === 'live' ? p.mappings.map((m) => ({ start: fromHex(m.start), end: fromHex(m.end) })) : []));
  for (const o of image.manifest.sharedMemory) {
    staged.objects.set(o.id, o);
    if (o.kind === 'anon') {
      const size = roundUp(o.size);
      if (size === 0n) continue;
      const addr = freeRange(size, [...taken, ...readMaps(root.pid)]);
      const r = await root.syscallOk(`mmap of shared anonymous object ${o.id}`, SYS.mmap, addr, size, PROT_RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
      if (r !== addr) throw new TraceeError(`shared anonymous object ${o.id} was not mapped where asked`);
      staged.anon.set(o.id, addr);
      staged.ranges.push({ start: addr, end: addr + size });
      if (o.pages) {
        const mem = openSync(`/proc/${root.pid}/mem`, 'r+');
        try {
          loadPageFile(image, o.pages, (page, buf) => pageIo.write(mem, root.pid, addr + BigInt(page * PAGE_SIZE), buf));
        } finally {
          closeSync(mem);
        }
      }
    } else if (o.kind === 'memfd') {
      staged.fds.set(o.id, await moveUp(await stageMemfd(root, scratch, image, o, warn)));
    } else if (o.kind === 'file') {
      staged.fds.set(o.id, await moveUp(await stageFile(root, scratch, image, o, warn)));
    }
  }
  return staged;
}

const F_DUPFD_CLOEXEC = 1030;
const RLIMIT_NOFILE = 7;

/** The restorer's soft limit on open files at least `need` (within its hard limit). */
async function raiseFdLimit(root: Tracee, scratch: Scratch, need: number): Promise<void> {
  await root.syscallOk('prlimit64(RLIMIT_NOFILE)', SYS.prlimit64, 0, RLIMIT_NOFILE, 0, scratch.addr);
  const lim = root.read(scratch.addr, 16);
  if (lim.readBigUInt64LE(0) >= BigInt(need)) return;
  if (lim.readBigUInt64LE(8) < BigInt(need)) throw new ImageError(`restoring the image's shared memory needs ${need} open files, above this jail's hard limit (${lim.readBigUInt64LE(8)}); raise it (ulimit -Hn)`);
  lim.writeBigUInt64LE(BigInt(need), 0);
  root.write(scratch.addr, lim);
  await root.syscallOk('raising RLIMIT_NOFILE for the restore', SYS.prlimit64, 0, RLIMIT_NOFILE, scratch.addr, 0);
}

/** A free range of `size` bytes above 4 GiB, clear of `taken`. */
function freeRange(size: bigint, taken: { start: bigint; end: bigint }[]): bigint {
  const sorted = [...taken].sort((a, b) => (a.start < b.start ? -1 : 1));
  let at = 0x200000000n;
  for (const r of sorted) {
    if (r.end <= at) continue;
    if (r.start >= at + size) break;
    at = r.end;
  }
  if (at + size > 0x7ff000000000n) throw new TraceeError('no free address range for a shared-memory object');
  return at;
}

async function openIn(root: Tracee, scratch: Scratch, path: string): Promise<number> {
  const p = Buffer.from(`${path}\0`);
  if (p.length > scratch.size) throw new TraceeError(`path too long: ${path}`);
  root.write(scratch.addr, p);
  return Number(await root.syscallOk(`open of ${path}`, SYS.openat, AT_FDCWD, scratch.addr, O_RDWR | O_CLOEXEC, 0));
}

/** A new file at `want` if free, else beside it (or in /dev/shm); returns the path used and our descriptor. */
function createNear(want: string, renamed = false): { path: string; fd: number } {
  const tries = [
    ...(renamed ? [] : [want]),
    join(dirname(want), `.${basename(want)}.restored-${randomBytes(4).toString('hex')}`),
    join('/dev/shm', `vjail-${basename(want)}-${randomBytes(4).toString('hex')}`),
  ];
  let last: unknown;
  for (const path of tries) {
    try {
      return { path, fd: openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600) };
    } catch (e) {
      last = e;
    }
  }
  throw new ImageError(`cannot re-create ${want}: ${(last as Error).message}`);
}

async function stageFile(root: Tracee, scratch: Scratch, image: OpenedImage, o: Extract<SharedObject, { kind: 'file' }>, warn: (line: string) => void): Promise<number> {
  if (!o.deleted) {
    // checkObjects made sure an existing one holds the saved contents.
    let fd: number | undefined;
    try {
      fd = openSync(o.path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, o.mode);
      fillFile(image, o, fd);
      fchmodSync(fd, o.mode);
      fchownSync(fd, o.uid, o.gid);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new ImageError(`cannot re-create ${o.path}: ${(e as Error).message}`);
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
    return openIn(root, scratch, o.path);
  }
  const first = await recreateDeleted(root, scratch, image, o, createNear(o.path));
  if (first.fd !== null) {
    if (first.path !== o.path) warn(`the deleted file ${o.path} mapped by the image comes back as ${first.path} (deleted): its path is taken or cannot be created`);
    return first.fd;
  }
  // Some file systems (9p, FUSE without caching) cannot be mapped shared: tmpfs can.
  const second = await recreateDeleted(root, scratch, image, o, createNear(join('/dev/shm', basename(o.path)), true));
  if (second.fd === null) throw new TraceeError(`the deleted file ${o.path} cannot be re-created where it can be mapped shared`);
  warn(`the deleted file ${o.path} mapped by the image comes back as ${second.path} (deleted): ${dirname(o.path)} cannot be mapped shared here`);
  return second.fd;
}

/** Fill a re-created deleted file, open it in the restorer and unlink it; fd null if it cannot be mapped shared there. */
async function recreateDeleted(
  root: Tracee, scratch: Scratch, image: OpenedImage, o: Extract<SharedObject, { kind: 'file' }>, made: { path: string; fd: number },
): Promise<{ path: string; fd: number | null }> {
  try {
    fillFile(image, o, made.fd);
    fchmodSync(made.fd, o.mode);
    fchownSync(made.fd, o.uid, o.gid);
    const fd = await openIn(root, scratch, made.path);
    const probe = await root.syscall(SYS.mmap, 0, PAGE_SIZE, PROT_RW, MAP_SHARED, fd, 0);
    if (probe < 0n) {
      await root.syscall(SYS.close, fd);
      return { path: made.path, fd: null };
    }
    await root.syscallOk('munmap of a probe mapping', SYS.munmap, probe, PAGE_SIZE);
    return { path: made.path, fd };
  } finally {
    closeSync(made.fd);
    unlinkSync(made.path);
  }
}

/**
 * memfd_create in the restorer; where the jail's profile hides it, a file in
 * /dev/shm opened and unlinked instead (its name then differs; said so).
 */
async function stageMemfd(root: Tracee, scratch: Scratch, image: OpenedImage, o: Extract<SharedObject, { kind: 'memfd' }>, warn: (line: string) => void): Promise<number> {
  root.write(scratch.addr, Buffer.from(`${o.name.slice(0, 249)}\0`));
  const r = await root.syscall(SYS.memfd_create, scratch.addr, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (r < 0n) {
    warn(`memfd_create is not available to the restored jail (errno ${-r}): memfd ${o.name} comes back as an unlinked file in /dev/shm, unsealed`);
    const made = createNear(join('/dev/shm', `vjail-memfd-${o.name.replace(/\//g, '_')}`));
    try {
      fillFile(image, o, made.fd);
      return await openIn(root, scratch, made.path);
    } finally {
      closeSync(made.fd);
      unlinkSync(made.path);
    }
  }
  const fd = Number(r);
  const ours = openSync(`/proc/${root.pid}/fd/${fd}`, 'r+');
  try {
    fillFile(image, o, ours);
  } finally {
    closeSync(ours);
  }
  // Without MFD_ALLOW_SEALING the kernel had set F_SEAL_SEAL alone: adding it again means the same.
  if (o.seals) {
    let s = await root.syscall(SYS.fcntl, fd, F_ADD_SEALS, o.seals);
    if (s < 0n && o.seals & F_SEAL_EXEC) {
      warn(`memfd ${o.name}: this kernel has no F_SEAL_EXEC; its other seals are restored`);
      s = await root.syscall(SYS.fcntl, fd, F_ADD_SEALS, o.seals & ~F_SEAL_EXEC);
    }
    if (s < 0n) throw new TraceeError(`restoring the seals of memfd ${o.name} failed: errno ${-s}`);
  }
  return fd;
}

const PROT = (perms: string): number => (perms[0] === 'r' ? 1 : 0) | (perms[1] === 'w' ? 2 : 0) | (perms[2] === 'x' ? 4 : 0);

/**
 * Map one mapping of kind `object` at its address. `prev`: the mapping just
 * before it, whose System V attach may already cover it.
 */
export async function mapObject(t: Tracee, m: Mapping, staged: StagedObjects, prev: Mapping | undefined): Promise<void> {
  const o = staged.objects.get(m.object!);
  if (!o) throw new TraceeError(`mapping ${m.start} names shared-memory object ${m.object}, which was not made`);
  const start = fromHex(m.start);
  const len = fromHex(m.end) - start;
  const offset = fromHex(m.offset);
  const prot = PROT(m.perms);
  const what = `${m.name ?? 'shared memory'} at ${m.start}`;
  let r: bigint;
  if (o.kind === 'anon') {
    // mremap with old size 0 maps the same pages again (shared mappings only).
    const base = staged.anon.get(o.id)!;
    r = await t.syscallOk(`mremap of ${what}`, SYS.mremap, base + offset, 0, len, MREMAP_MAYMOVE | MREMAP_FIXED, start);
    if (r === start) await t.syscallOk(`mprotect of ${what}`, SYS.mprotect, start, len, prot);
  } else if (o.kind === 'sysv') {
    // One attach covers the whole segment; its later pieces (other permissions) follow it.
    const continues = prev !== undefined && prev.object === m.object && prev.end === m.start && fromHex(prev.offset) + (fromHex(prev.end) - fromHex(prev.start)) === offset;
    if (!continues) {
      if (offset !== 0n) throw new TraceeError(`System V segment ${o.shmid} was attached at ${m.start} without its first page; cannot restore`);
      const flags = (m.perms[1] === 'w' ? 0 : SHM_RDONLY) | (m.perms[2] === 'x' ? SHM_EXEC : 0);
      r = await t.syscallOk(`shmat of ${what}`, SYS.shmat, o.shmid, start, flags);
    } else r = start;
    if (r === start) await t.syscallOk(`mprotect of ${what}`, SYS.mprotect, start, len, prot);
  } else {
    const fd = staged.fds.get(o.id)!;
    const flags = MAP_FIXED | (m.perms[3] === 's' ? MAP_SHARED : MAP_PRIVATE);
    r = await t.syscallOk(`mmap of ${what}`, SYS.mmap, start, len, prot, flags, fd, offset);
  }
  if (r !== start) throw new TraceeError(`${what} landed at 0x${r.toString(16)}`);
}

/** Let go of the staging mappings and descriptors in one process, once its own mappings are in place. */
export async function releaseStaged(t: Tracee, staged: StagedObjects): Promise<void> {
  for (const r of staged.ranges) await t.syscallOk('munmap of a staging mapping', SYS.munmap, r.start, r.end - r.start);
  for (const fd of staged.fds.values()) await t.syscall(SYS.close, fd);
}
