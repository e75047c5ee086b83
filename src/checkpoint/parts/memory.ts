/**
 * Memory: the address space as /proc/PID/maps lists it, and the data of its
 * private pages. Collected from maps, pagemap and mem; restored by injected
 * mmap calls and writes to /proc/PID/mem.
 *
 * What is saved as data: populated pages (present or swapped, per pagemap)
 * of anonymous mappings, and of private file mappings only the pages that
 * were written to (no longer the file's page). Shared file mappings are
 * mapped from their file again. vDSO and vvar are never data: restore moves
 * the restoring kernel's own vDSO to the image's address, or, when it is not
 * the image's, keeps it elsewhere and redirects the old entry points to it
 * (vdso.ts).
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import {
  type ImageWriter,
  ImageError,
  OffThreadHash,
  type LiveProcess,
  type Mapping,
  type OpenedImage,
  type Pages,
  PAGE_BUFFER_SIZE,
  PAGE_SIZE,
  fromHex,
  pageBuffer,
  openPageFile,
  sha256File,
  toHex,
  treeDigest,
  treeHashed,
} from '../../image/format.js';
import { chunkHashAddon } from '../../native/chunkhash.js';
import { type MapsEntry, readMaps, type Tracee, TraceeError } from '../tracee.js';
import { throwIfInterrupted } from '../interrupt.js';
import { pageIo } from '../pagecopy.js';
import { SYS } from '../syscalls.js';
import { checkRedirect, placeRedirect, vdsoDiffers } from './vdso.js';
import { mapObject, noStagedObjects, releaseStaged, type SharedObjects, type StagedObjects } from './shmem.js';
import { CheckpointUnsupported } from '../errors.js';
import { intersectRuns, type MemoryTrack, type PageRuns, type TrackedMapping } from '../predump.js';
import { LazyPages } from './lazy.js';
import { StepTimer } from '../../timings.js';
import { readCached, writeCached } from '../../cache.js';
import { cpuFlags } from '../cpu.js';

/** Pagemap flags (bits 63, 62, 61 of an entry), as bits of its upper 32-bit half: no BigInt per page. */
const PM_PRESENT = 1 << 31;
const PM_SWAPPED = 1 << 30;
const PM_FILE_OR_SHARED_ANON = 1 << 29;
const CHUNK = PAGE_BUFFER_SIZE;
/** Restore loads page files in chunks of this size, through the page buffer ring. */
const LOAD_CHUNK = PAGE_BUFFER_SIZE;

const SPECIAL: Record<string, Mapping['kind']> = {
  '[heap]': 'heap',
  '[stack]': 'stack',
  '[vdso]': 'vdso',
  '[vvar]': 'vvar',
  '[vvar_vclock]': 'vvar_vclock',
  '[vsyscall]': 'vsyscall',
};

/** The vDSO and its data pages: moved as one block, never saved as data. */
const VDSO_BLOCK = new Set<Mapping['kind']>(['vdso', 'vvar', 'vvar_vclock']);

/** How /proc/PID/maps names a MAP_SHARED|MAP_ANONYMOUS mapping (an unlinked shmem file). */
const SHARED_ANON_NAME = '/dev/zero (deleted)';

/**
 * A mapping of a kernel object that no kind saves (an io_uring's rings, a perf
 * event's buffer): named by the external-state step with its descriptor, and,
 * when the user lets the checkpoint go on without it (--external warn), left
 * out of the image with it.
 */
export function isExternalMapping(e: MapsEntry): boolean {
  return e.name !== null && !(e.name in SPECIAL) && !e.name.startsWith('/');
}

/** The mappings of process `pid` that the external-state step names. */
export function externalMappings(pid: number): MapsEntry[] {
  return readMaps(pid).filter(isExternalMapping);
}

function kindOf(e: MapsEntry): Mapping['kind'] {
  if (e.name === null) return 'anon';
  // Its pages are its own, saved like anonymous memory and mapped MAP_SHARED|MAP_ANONYMOUS again.
  if (e.name === SHARED_ANON_NAME && e.perms[3] === 's') return 'anon';
  const special = SPECIAL[e.name];
  if (special) return special;
  if (e.name.startsWith('/')) return 'file';
  throw new CheckpointUnsupported(`mapping ${e.name} at 0x${e.start.toString(16)} cannot be checkpointed yet`);
}

/**
 * sha256 of mapped files, each file hashed once per call (a library is
 * mapped four or five times), and kept in the cache (cache.ts) by device
 * and inode for as long as its size, mtime and ctime stay: a restore checks
 * every file its image maps while the workload is stopped (libc and the
 * loader are in nearly every image), and hashing them took most of its
 * checks (5 ms of a migration's stop). Any write to a file changes its
 * ctime, which no one can set back, so a changed file is hashed again.
 * Entries are written by `persist`, not while the jail is held.
 */
export class FileHashes {
  private readonly known = new Map<string, string>();
  private readonly fresh: [slot: string, inputs: string, sha: string][] = [];

  of(path: string, st: { dev: number; ino: number; size: number; mtimeMs: number; ctimeMs: number }): string {
    const slot = `${st.dev}:${st.ino}`;
    const inputs = `${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
    const key = `${slot}:${inputs}`;
    let sha = this.known.get(key);
    if (sha !== undefined) return sha;
    sha = readCached(FILE_HASHES, slot, inputs, (v) => (typeof v === 'string' && SHA256_HEX.test(v) ? v : undefined));
    if (sha === undefined) {
      sha = sha256File(path);
      this.fresh.push([slot, inputs, sha]);
    }
    this.known.set(key, sha);
    return sha;
  }

  /** Keep the hashes computed since the last call in the cache, for the next checkpoint or restore. */
  persist(): void {
    for (const [slot, inputs, sha] of this.fresh.splice(0)) writeCached(FILE_HASHES, slot, inputs, sha);
  }
}
const FILE_HASHES = 'file-hashes';
const SHA256_HEX = /^[0-9a-f]{64}$/;

/** This process's: checkpoints and restores share what they hashed, and persist it once done (fileHashes.persist()). */
export const fileHashes = new FileHashes();


/**
 * The memory of one process. Mappings of shared-memory objects (shared
 * anonymous memory, memfds, POSIX and System V shared memory, deleted
 * files) name their object in `objects`, which saves each one once. With a
 * pre-dump (`track`), a tracked mapping's pages not copied already are read
 * now, and its page file is written by a step pushed on `later` (run once
 * the process need not be held any more).
 */
export function collectMemory(t: Tracee, image: ImageWriter, objects: SharedObjects, track?: MemoryTrack, later?: (() => void)[], timer?: StepTimer): Mapping[] {
  // What is left is external state the user chose to leave out (--external warn): the step before named it.
  const maps = readMaps(t.pid).filter((e) => !isExternalMapping(e));
  const pagemap = openSync(`/proc/${t.pid}/pagemap`, 'r');
  const mem = openSync(`/proc/${t.pid}/mem`, 'r');
  const tracked = (e: MapsEntry): TrackedMapping | null => (track && later ? track.mapping(e) ?? track.untracked(e) : null);
  try {
    timer?.lap(`${t.pid} memory: maps`);
    return maps.map((e) => {
      const m = collectMapping(t, image, pagemap, mem, fileHashes, e, objects, tracked, later);
      timer?.lap(`${t.pid} memory: ${m.start}-${m.end} ${m.kind}`);
      return m;
    });
  } finally {
    closeSync(mem);
    closeSync(pagemap);
  }
}

function collectMapping(
  t: Tracee, image: ImageWriter, pagemap: number, mem: number, files: FileHashes, e: MapsEntry, objects: SharedObjects,
  tracked: (e: MapsEntry) => TrackedMapping | null, later?: (() => void)[],
): Mapping {
  let kind = kindOf(e);
  const shared = e.perms[3] === 's';
  const object = objects.forMapping(t.pid, e);
  if (object !== null) kind = 'object';
  const m: Mapping = { start: toHex(e.start), end: toHex(e.end), perms: e.perms, offset: toHex(e.offset), kind, name: e.name, ...(object !== null ? { object } : {}) };
  if (kind === 'vsyscall' || VDSO_BLOCK.has(kind)) return m;
  if (kind === 'object' && shared) return m; // the data is the object's
  if (kind === 'file') {
    // The path as the process sees it, found through its root (a container's differs from ours).
    const here = `/proc/${t.pid}/root${e.name!}`;
    const st = statSync(here);
    m.file = { path: e.name!, size: st.size, mtimeMs: st.mtimeMs, sha256: files.of(here, st) };
    if (shared) return m; // the data is the file's
  }
  const pages = Number((e.end - e.start) / BigInt(PAGE_SIZE));
  const pre = kind === 'object' ? null : tracked(e);
  if (pre?.populated) {
    // Pre-dumped: which pages are populated is one scan, not a pagemap entry per page.
    collectTracked(pre, pre.populated, (runs) => later!.push(() => (m.pages = pre.pageFile(image, runs))));
    return m;
  }
  // Which pages hold data of their own?
  const entries = Buffer.alloc(pages * 8);
  const firstIndex = Number(e.start / BigInt(PAGE_SIZE));
  for (let off = 0; off < entries.length; ) {
    const n = readSync(pagemap, entries, off, entries.length - off, (firstIndex * 8) + off);
    if (n === 0) break;
    off += n;
  }
  const own = (i: number): boolean => {
    const v = entries.readUInt32LE(i * 8 + 4);
    if (!(v & (PM_PRESENT | PM_SWAPPED))) return false;
    return (kind !== 'file' && kind !== 'object') || !(v & PM_FILE_OR_SHARED_ANON);
  };
  if (pre) {
    collectTracked(pre, ownRuns(pages, own), (runs) => later!.push(() => (m.pages = pre.pageFile(image, runs))));
    return m;
  }
  let writer: ReturnType<ImageWriter['pageFile']> | undefined;
  for (let i = 0; i < pages; ) {
    if (!own(i)) {
      i++;
      continue;
    }
    let j = i;
    while (j < pages && own(j) && (j - i) * PAGE_SIZE < CHUNK) j++;
    writer ??= image.pageFile();
    const buf = pageBuffer().subarray(0, (j - i) * PAGE_SIZE);
    pageIo.read(mem, t.pid, e.start + BigInt(i * PAGE_SIZE), buf);
    writer.append(i, buf);
    i = j;
  }
  if (writer) m.pages = writer.close();
  return m;
}

/** The runs (page index, count) of pages `own` says hold data. */
function ownRuns(pages: number, own: (i: number) => boolean): [number, number][] {
  const runs: [number, number][] = [];
  for (let i = 0; i < pages; ) {
    if (!own(i)) {
      i++;
      continue;
    }
    let j = i;
    while (j < pages && own(j)) j++;
    runs.push([i, j - i]);
    i = j;
  }
  return runs;
}

/** A pre-dumped mapping: read the pages of `runs` not copied yet, and leave the page file for later. */
function collectTracked(pre: TrackedMapping, runs: PageRuns, pageFile: (runs: PageRuns) => void): void {
  for (const [i, count] of intersectRuns(runs, pre.readNow)) pre.read(i, count);
  if (runs.length) pageFile(runs);
}

/** Reasons the image's memory cannot be restored here, found before anything is started; files are looked up under `root` ('' for ours). */
export function checkMemory(image: OpenedImage, root = ''): void {
  const here = readMaps(process.pid);
  const top = userSpaceEnd();
  for (const p of image.manifest.processes) {
    if (p.state !== 'live') continue;
    const beyond = p.mappings.find((m) => m.kind !== 'vsyscall' && fromHex(m.end) > top);
    if (beyond) throw new ImageError(`process ${p.pid} of the image maps ${beyond.start}-${beyond.end}, beyond the end of user space here (${toHex(top)})`);
    checkMappings(p.mappings, fileHashes, root);
    // This process runs on the same kernel as the restorer will: its vDSO tells.
    if (needsRedirect(p, here, (e) => readSelf(e))) checkRedirect(p);
  }
}

/** The end of a process's address space here: 47 bits less a guard page, 56 with 5-level paging (la57). */
function userSpaceEnd(): bigint {
  return (1n << (cpuFlags().has('la57') ? 56n : 47n)) - BigInt(PAGE_SIZE);
}

function readSelf(e: MapsEntry): Buffer {
  const fd = openSync('/proc/self/mem', 'r');
  try {
    const buf = Buffer.alloc(Number(e.end - e.start));
    readSync(fd, buf, 0, buf.length, Number(e.start));
    return buf;
  } finally {
    closeSync(fd);
  }
}

const blockLayout = (xs: { name: string | null; start: bigint; end: bigint }[]): string => {
  const base = xs[0]?.start ?? 0n;
  return xs.map((x) => `${x.name}:${x.start - base}:${x.end - x.start}`).join(',');
};

/** Is this kernel's vDSO block (in `have`) other than the image's, in layout or content? */
function needsRedirect(p: LiveProcess, have: MapsEntry[], read: (e: MapsEntry) => Buffer): boolean {
  const cur = have.filter((e) => VDSO_BLOCK.has(kindOf(e)));
  const img = p.mappings.filter((m) => VDSO_BLOCK.has(m.kind)).map((m) => ({ name: m.name, start: fromHex(m.start), end: fromHex(m.end) }));
  const vdso = cur.find((e) => e.name === '[vdso]');
  if (!vdso) throw new ImageError('this kernel gives processes no vDSO; restoring is not supported without one');
  if (blockLayout(cur) !== blockLayout(img)) return true;
  return p.vdso !== null && vdsoDiffers(p.vdso, read(vdso));
}

function checkMappings(mappings: Mapping[], files: FileHashes, root: string): void {
  for (const m of mappings) {
    if (!m.file) continue;
    const here = `${root}${m.file.path}`;
    let st;
    try {
      st = statSync(here);
    } catch {
      throw new ImageError(`the image maps ${m.file.path}, which does not exist here`);
    }
    if (st.size !== m.file.size || files.of(here, st) !== m.file.sha256) {
      throw new ImageError(`the image maps ${m.file.path}, which has changed since the checkpoint`);
    }
  }
  const vdso = mappings.filter((m) => VDSO_BLOCK.has(m.kind));
  if (!vdso.some((m) => m.kind === 'vdso')) throw new ImageError('the image has no vDSO; restoring such a process is not supported yet');
}

interface Range {
  start: bigint;
  end: bigint;
}

/** A free range of `size` bytes outside every range given. */
function findHole(size: bigint, taken: Range[]): bigint {
  const sorted = [...taken].sort((a, b) => (a.start < b.start ? -1 : 1));
  let at = 0x100000000n; // above 4 GiB: clear of non-PIE binaries and their heaps
  for (const r of sorted) {
    if (r.end <= at) continue;
    if (r.start >= at + size) break;
    at = r.end;
  }
  if (at + size > 0x7ff000000000n) throw new TraceeError('no free address range for the restore');
  return at;
}

const PROT = (perms: string): number => (perms[0] === 'r' ? 1 : 0) | (perms[1] === 'w' ? 2 : 0) | (perms[2] === 'x' ? 4 : 0);
const MAP_SHARED = 0x01;
const MAP_PRIVATE = 0x02;
const MAP_FIXED = 0x10;
const MAP_ANONYMOUS = 0x20;
const MAP_FIXED_NOREPLACE = 0x100000;
const MREMAP_MAYMOVE = 1;
const MREMAP_FIXED = 2;
const AT_FDCWD = -100;
const O_RDONLY = 0;
const O_RDWR = 2;
const O_CLOEXEC = 0o2000000;

/** A page in the tracee for syscall arguments (paths, structs). */
export interface Scratch {
  addr: bigint;
  size: number;
}

/**
 * Replace the restorer's address space with the image's: move the vDSO
 * block to the image's address, unmap everything else of the restorer,
 * map a scratch page, then every mapping of the image with its data.
 */
export async function restoreMemory(
  t: Tracee, image: OpenedImage, want: Mapping[], proc?: LiveProcess, note?: (line: string) => void, staged: StagedObjects = noStagedObjects(),
  lazy?: LazyPages,
): Promise<Scratch> {
  const timer = new StepTimer('memory');
  const imageRanges = want.map((m) => ({ start: fromHex(m.start), end: fromHex(m.end) }));
  const have = readMaps(t.pid);
  const curBlock = have.filter((e) => VDSO_BLOCK.has(kindOf(e)));
  const imgBlock = want.filter((m) => VDSO_BLOCK.has(m.kind));
  const vdso = curBlock.find((e) => e.name === '[vdso]')!;
  const p: LiveProcess | undefined = proc;
  const current = t.read(vdso.start, Number(vdso.end - vdso.start));
  const redirect = p ? needsRedirect(p, have, () => current) : blockLayout(curBlock) !== blockLayout(imgBlock.map((m) => ({ name: m.name, start: fromHex(m.start), end: fromHex(m.end) })));
  if (redirect && !p) throw new ImageError('this kernel\'s vDSO differs from the image\'s');
  if (redirect) checkRedirect(p!);
  if (t.gadget < vdso.start || t.gadget >= vdso.end) throw new TraceeError('the restorer has no syscall instruction in its vDSO');

  // 1. The vDSO block goes to a range free now and in the image, keeping its layout.
  const blockStart = curBlock[0]!.start;
  const blockSize = curBlock.at(-1)!.end - blockStart;
  const tmp = findHole(blockSize, [...have, ...imageRanges]);
  await moveBlock(t, curBlock, blockStart, tmp);

  // 2. Everything else of the restorer goes, but the shared-memory objects it staged for the image.
  const stagedHere = (e: MapsEntry): boolean => staged.ranges.some((r) => e.start >= r.start && e.end <= r.end);
  const gone = readMaps(t.pid).filter((e) => !(e.name === '[vsyscall]' || (e.start >= tmp && e.end <= tmp + blockSize) || stagedHere(e)));
  await t.syscallBatchOk((i) => `munmap of the restorer's ${gone[i]!.name ?? 'anonymous mapping'}`, SYS.munmap, gone.map((e) => [e.start, e.end - e.start]));

  // 3. The block goes to the image's address, unless it is another kernel's: then it stays.
  if (!redirect) {
    const now = readMaps(t.pid).filter((e) => e.start >= tmp && e.end <= tmp + blockSize);
    await moveBlock(t, now, tmp, fromHex(imgBlock[0]!.start));
  }

  timer.lap('the restorer\'s mappings moved and unmapped');
  // 4. A scratch page, outside the image.
  const scratch: Scratch = { addr: findHole(BigInt(PAGE_SIZE), [...readMaps(t.pid), ...imageRanges]), size: PAGE_SIZE };
  const got = await t.syscallOk('mmap of a scratch page', SYS.mmap, scratch.addr, PAGE_SIZE, 3, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (got !== scratch.addr) throw new TraceeError('the scratch page was not mapped where asked');

  // 5. The image's mappings, then their data.
  // Each file is opened once: a program's or library's four or five mappings share its descriptor.
  const files = new Map<string, bigint>();
  try {
    await mapAll(t, scratch, want.filter((m) => m.kind !== 'object' && m.kind !== 'vsyscall' && !VDSO_BLOCK.has(m.kind)), files);
    let prev: Mapping | undefined;
    for (const m of want) {
      if (m.kind === 'object') await mapObject(t, m, staged, prev);
      prev = m;
    }
  } finally {
    if (files.size) await t.syscallBatch(SYS.close, [...files.values()].map((fd) => [fd]));
  }
  await releaseStaged(t, staged);
  timer.lap(`${want.length} mappings mapped`);
  // Lazily restored memory is served from here on; the rest is loaded now.
  const lazyMaps = lazy ? want.filter((m) => LazyPages.eligible(m)) : [];
  await lazy?.start(t, scratch, image, lazyMaps);
  timer.lap('lazy pages registered');
  const mem = openSync(`/proc/${t.pid}/mem`, 'r+');
  try {
    for (const m of want) if (m.pages && !lazyMaps.includes(m)) loadPages(t, mem, image, m);
  } finally {
    closeSync(mem);
  }
  timer.lap('the other pages loaded');
  if (redirect) {
    const mmapAt = async (addr: bigint, len: bigint, prot: number): Promise<void> => {
      const r = await t.syscallOk('mmap of the vDSO redirect', SYS.mmap, addr, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
      if (r !== addr) throw new TraceeError('the vDSO redirect was not mapped where asked');
    };
    note?.(await placeRedirect(t, p!, tmp + (vdso.start - blockStart), current, mmapAt));
  }
  return scratch;
}

async function moveBlock(t: Tracee, block: MapsEntry[], from: bigint, to: bigint): Promise<void> {
  if (from === to) return;
  for (const e of block) {
    const size = e.end - e.start;
    const dest = to + (e.start - from);
    const r = await t.syscallOk(`mremap of ${e.name}`, SYS.mremap, e.start, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, dest);
    if (r !== dest) throw new TraceeError(`mremap of ${e.name} went to 0x${r.toString(16)}`);
  }
  t.gadget = t.gadget - from + to;
}

/**
 * Map `maps` in the tracee (files and anonymous memory, not shared-memory
 * objects): each file opened once (its descriptor kept in `files`, by access
 * and path, for the caller to close), then every mapping, each step one
 * batch of calls whose stops are waited for in C: one by one, a restore's
 * 25 mappings and their files took 5-9 ms of a migrated jail's stop.
 */
async function mapAll(t: Tracee, scratch: Scratch, maps: Mapping[], files: Map<string, bigint>): Promise<void> {
  const failed = (r: bigint): boolean => t.failure('', r) !== null;
  const writable = (m: Mapping): boolean => m.perms[3] === 's' && m.perms[1] === 'w';
  const keyOf = (m: Mapping): string => `${writable(m) ? 'rw' : 'r'} ${m.file!.path}`;
  const toOpen = [...new Map(maps.filter((m) => m.file).map((m) => [keyOf(m), { path: m.file!.path, writable: writable(m) }])).entries()];
  // Their paths side by side in the scratch page, as many as fit at a time.
  while (toOpen.length) {
    const batch: { key: string; path: string; writable: boolean; at: number }[] = [];
    let used = 0;
    for (const [key, { path, writable }] of toOpen) {
      const bytes = Buffer.from(`${path}\0`);
      if (bytes.length > scratch.size) throw new TraceeError(`path too long: ${path}`);
      if (used + bytes.length > scratch.size) break;
      t.write(scratch.addr + BigInt(used), bytes);
      batch.push({ key, path, writable, at: used });
      used += bytes.length;
    }
    toOpen.splice(0, batch.length);
    throwIfInterrupted();
    const fds = await t.syscallBatch(SYS.openat, batch.map((f) => [AT_FDCWD, scratch.addr + BigInt(f.at), (f.writable ? O_RDWR : O_RDONLY) | O_CLOEXEC, 0]));
    // Every descriptor opened is kept (closed by the caller), before a failure is said.
    batch.forEach(({ key }, i) => void (failed(fds[i]!) || files.set(key, fds[i]!)));
    const bad = batch.findIndex((_, i) => failed(fds[i]!));
    if (bad >= 0) throw t.failure(`open of ${batch[bad]!.path}`, fds[bad]!)!;
  }
  const args = maps.map((m) => {
    const start = fromHex(m.start);
    const flags = MAP_FIXED | (m.perms[3] === 's' ? MAP_SHARED : MAP_PRIVATE);
    return m.file
      ? [start, fromHex(m.end) - start, PROT(m.perms), flags, files.get(keyOf(m))!, fromHex(m.offset)]
      : [start, fromHex(m.end) - start, PROT(m.perms), flags | MAP_ANONYMOUS, -1, 0];
  });
  const got = await t.syscallBatchOk((i) => (maps[i]!.file ? `mmap of ${maps[i]!.file!.path}` : `mmap of ${maps[i]!.name ?? 'anonymous memory'} at ${maps[i]!.start}`), SYS.mmap, args);
  maps.forEach((m, i) => {
    if (got[i] !== args[i]![0]) throw new TraceeError(`mapping ${m.start} landed at 0x${got[i]!.toString(16)}`);
  });
}

/**
 * A page file this small (a data segment's, a stack's) is read whole and
 * hashed here, before any of it is written: handing it to the hashing
 * thread and waiting for its digest cost more than the hashing (a restore's
 * dozen small page files took 4-5 ms, most of it those waits).
 */
const INLINE_HASH_BYTES = 1 << 20;

function loadSmallPageFile(image: OpenedImage, pages: Pages, write: (page: number, data: Buffer) => void): void {
  const fd = openPageFile(image, pages);
  const data = Buffer.allocUnsafe(pages.size);
  try {
    for (let off = 0; off < data.length; ) {
      const got = readSync(fd, data, off, data.length - off, off);
      if (got === 0) throw new ImageError(`${image.dir} is damaged: ${pages.file} ended early`);
      off += got;
    }
  } finally {
    closeSync(fd);
  }
  // Format 6 and later: the file's digest is of its chunks' digests (openImage saw that it has chunks).
  const digest = treeHashed(image) ? treeDigest(chunkHashAddon().sha256Chunks(data, pages.chunks!.size)) : createHash('sha256').update(data).digest('hex');
  if (digest !== pages.sha256) throw new ImageError(`${image.dir} is damaged: ${pages.file} does not match its checksum`);
  let at = 0;
  for (const [first, count] of pages.runs) {
    write(first, data.subarray(at, at + count * PAGE_SIZE));
    at += count * PAGE_SIZE;
  }
  image.progress?.(data.length);
}

/** Load a mapping's own page file into the process. */
function loadPages(t: Tracee, mem: number, image: OpenedImage, m: Mapping): void {
  const start = fromHex(m.start);
  loadPageFile(image, m.pages!, (page, buf) => pageIo.write(mem, t.pid, start + BigInt(page * PAGE_SIZE), buf));
}

/**
 * Hand a page file to `write` chunk by chunk (page index, data), hashing it
 * on the way (on the hashing thread, while the next chunk is read and
 * written): one read of the file both loads and verifies it. A mismatch
 * throws before the process is let go, and restore kills what it started.
 */
export function loadPageFile(image: OpenedImage, pages: Pages, write: (page: number, data: Buffer) => void): void {
  if (pages.size <= INLINE_HASH_BYTES) return loadSmallPageFile(image, pages, write);
  const fd = openPageFile(image, pages);
  // Format 6 and later: the chunks' digests, and the file's of them (openImage saw that it has chunks).
  const hash = treeHashed(image) ? new OffThreadHash(pages.chunks!.size, true) : new OffThreadHash();
  let digest: string;
  try {
    let fileOff = 0;
    for (const [first, count] of pages.runs) {
      for (let done = 0; done < count; ) {
        const n = Math.min(count - done, LOAD_CHUNK / PAGE_SIZE);
        const buf = pageBuffer().subarray(0, n * PAGE_SIZE);
        for (let off = 0; off < buf.length; ) {
          const got = readSync(fd, buf, off, buf.length - off, fileOff + off);
          if (got === 0) throw new ImageError(`${image.dir} is damaged: ${pages.file} ended early`);
          off += got;
        }
        hash.update(buf);
        write(first + done, buf);
        image.progress?.(buf.length);
        fileOff += buf.length;
        done += n;
      }
    }
  } finally {
    closeSync(fd);
    digest = hash.digest(); // also on failure, so the hashing thread lets go of it
  }
  if (digest !== pages.sha256) throw new ImageError(`${image.dir} is damaged: ${pages.file} does not match its checksum`);
}
