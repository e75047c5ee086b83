/**
 * Step 1 of a checkpoint, the iterative pre-dump: copy a jail's private
 * anonymous memory while it runs, then only what it wrote meanwhile, round
 * after round, so that the frozen dump copies just the last few pages.
 *
 * Writes are tracked with a userfaultfd in asynchronous write-protect mode
 * (Linux 6.7+): the kernel resolves each write fault itself by clearing the
 * page's protection, so the workload never waits for vjail, and
 * PAGEMAP_SCAN lists the pages written since the last scan and protects
 * them again in the same walk. A userfaultfd belongs to the address space
 * that creates it: one is made inside each process by an injected call,
 * fetched with pidfd_getfd and closed there at once, before anything is
 * registered. vjail then holds the only reference: closing it, or vjail
 * dying (SIGKILL included), unregisters every range, and the kernel drops
 * the protection (native/predump.c).
 *
 * Copies go to sparse files beside the image (one per tracked range, a
 * page at its offset in the range). At freeze `MemoryTrack.mapping` says,
 * per mapping, which pages must still be read from the process (as runs,
 * from two PAGEMAP_SCANs: no loop over every page of a GiB while the jail
 * is stopped); they are read into memory then and written to the store
 * with the page file, built from the store afterwards, possibly after the
 * jail was let go: the image's pages are those of the frozen process.
 */
import { closeSync, fstatSync, mkdtempSync, openSync, readdirSync, readSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type ImageWriter, OffThreadHash, PAGE_SIZE, type Pages, pageBuffer } from '../image/format.js';
import { isNativeError } from '../native.js';
import { preDumpAddon as addon } from '../native/predump.js';
import { pidfdGetfd, sys, sysOk } from '../native/fdio.js';
import { pageIo } from './pagecopy.js';
import { pageCopyAddon } from '../native/pagecopy.js';
import { fileHashes } from './parts/memory.js';
import { SYS } from './syscalls.js';
import { type MapsEntry, readMaps, Tracee } from './tracee.js';
import { throwIfInterrupted } from './interrupt.js';
import { hasSoftDirty } from './jail-info.js';


const SYS_USERFAULTFD = 323;
const UFFD_USER_MODE_ONLY = 1;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const UFFD_FEATURE_WP_UNPOPULATED = 1n << 13n;
const UFFD_FEATURE_WP_ASYNC = 1n << 15n;
const FEATURES = UFFD_FEATURE_WP_UNPOPULATED | UFFD_FEATURE_WP_ASYNC;
const OP_REGISTER = 0;
const OP_PROTECT = 1;
const OP_UNREGISTER = 2;
const PM_SCAN_WP_MATCHING = 1;
const PM_SCAN_CHECK_WPASYNC = 2;
const PAGE_IS_WRITTEN = 1 << 1;
const PAGE_IS_PRESENT = 1 << 3;
const PAGE_IS_SWAPPED = 1 << 4;
const PAGE_IS_PFNZERO = 1 << 5;

/** Default and upper bound of rounds after the first full copy. */
export const DEFAULT_ROUNDS = 8;
/** A round that finds at most this much written ends the pre-dump: the frozen copy of it is short. */
const SMALL_DIRTY = 1 << 20;
/** A range this much bigger than its populated part, and over MIN_SPARSE, is left to the frozen copy (protecting it would fill page tables). */
const SPARSE_RATIO = 64;
const MIN_SPARSE = 64 * 2 ** 20;
const CHUNK = 1 << 20;
/** Forcing today's full copy (tests, comparisons): set to 1. */
export const FALLBACK_ENV = 'VJAIL_PRE_DUMP_FALLBACK';

/**
 * Where a pre-dump's copies are also sent (a migration's receiver, which
 * keeps a copy of each store): told of every write to a store, given the
 * chance to send after the first copy and after each round (the jail runs),
 * and told how each page file is made from a store.
 */
export interface StoreMirror {
  /** `len` bytes at `offset` of store `name` (open as `fd`, at most `storeMax` bytes long) were written. */
  copied(name: string, fd: number, offset: number, len: number, storeMax: number): void;
  /** Send what was written since the last call (the jail runs meanwhile). */
  round(): Promise<void>;
  /** The page file `file` of the image is the concatenation of these runs (page index in the store, count) of store `name`. */
  pageFile(file: string, size: number, name: string, runs: [number, number][]): void;
  /**
   * The digests of each `chunk` bytes of store `name`'s first `size`
   * bytes (its whole length), kept up to date as it is written; null where
   * the mirror does not keep them. With them, a page file that is the store
   * as it is need not be written on this side (the receiver makes it).
   */
  chunkDigests?(name: string, size: number): { chunk: number; sums: Buffer } | null;
}

export interface PreDumpOptions {
  mirror?: StoreMirror;
  /** Rounds of copying what was written, after the first copy (default 8); fewer when one finds little. */
  rounds?: number;
  /** A directory on the image's file system for the copies (default: beside the image). */
  imageDir: string;
  report?: (detail: string) => void;
}

/** Why dirty-page tracking cannot be used here, or null when it can (asked of the kernel with vjail's own memory). */
export function dirtyTrackingUnsupported(): string | null {
  if (process.env[FALLBACK_ENV] === '1') return `${FALLBACK_ENV}=1 forces the full copy`;
  const fd = Number(sys(SYS_USERFAULTFD, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY));
  if (fd < 0) return `userfaultfd is not available (${-fd === 38 ? 'ENOSYS' : `errno ${-fd}`})`;
  try {
    try {
      addon().uffdApi(fd, FEATURES);
    } catch {
      return 'this kernel\'s userfaultfd has no asynchronous write-protect (Linux 6.7+)';
    }
  } finally {
    closeSync(fd);
  }
  const pm = openSync('/proc/self/pagemap', 'r');
  try {
    const first = readMaps(process.pid)[0]!;
    addon().pagemapScan(pm, first.start, first.start + BigInt(PAGE_SIZE), 0, 0, 0, PAGE_IS_PRESENT);
  } catch {
    return 'this kernel has no PAGEMAP_SCAN (Linux 6.7+)';
  } finally {
    closeSync(pm);
  }
  return null;
}

/** Is this mapping's memory tracked: private, writable, anonymous (heap and stack too)? */
function trackable(e: MapsEntry): boolean {
  return e.perms[1] === 'w' && e.perms[3] === 'p' && (e.name === null || e.name === '[heap]' || e.name === '[stack]');
}

/** PAGEMAP_SCAN's ranges as [start, end): all of them, or those with any of the categories `of`. */
function ranges(buf: Buffer, of?: number): [bigint, bigint][] {
  const out: [bigint, bigint][] = [];
  for (let off = 0; off + 24 <= buf.length; off += 24) {
    if (of === undefined || Number(buf.readBigUInt64LE(off + 16)) & of) out.push([buf.readBigUInt64LE(off), buf.readBigUInt64LE(off + 8)]);
  }
  return out;
}

/** Runs of pages: (page index, count), sorted, none overlapping. */
export type PageRuns = [number, number][];

/** The runs of the pages whose byte in `flags` is `value` (found with indexOf: no loop over every page here). */
function runsWhere(flags: Uint8Array, value: 0 | 1): PageRuns {
  const out: PageRuns = [];
  for (let i = flags.indexOf(value); i >= 0; ) {
    const j = flags.indexOf(1 - value, i);
    const end = j < 0 ? flags.length : j;
    out.push([i, end - i]);
    i = j < 0 ? -1 : flags.indexOf(value, j);
  }
  return out;
}

/** The pages in either list of runs, as runs. */
function unionRuns(a: PageRuns, b: PageRuns): PageRuns {
  const out: PageRuns = [];
  for (const [i, n] of [...a, ...b].sort((x, y) => x[0] - y[0])) {
    const last = out[out.length - 1];
    if (last && i <= last[0] + last[1]) last[1] = Math.max(last[1], i + n - last[0]);
    else out.push([i, n]);
  }
  return out;
}

/** The same pages as runs, those that touch made one. */
const mergeRuns = (r: PageRuns): PageRuns => unionRuns(r, []);

/** The pages in both lists of runs, as runs. */
export function intersectRuns(a: PageRuns, b: PageRuns): PageRuns {
  const out: PageRuns = [];
  for (let i = 0, j = 0; i < a.length && j < b.length; ) {
    const [aStart, aCount] = a[i]!;
    const [bStart, bCount] = b[j]!;
    const start = Math.max(aStart, bStart);
    const end = Math.min(aStart + aCount, bStart + bCount);
    if (start < end) out.push([start, end - start]);
    if (aStart + aCount < bStart + bCount) i++;
    else j++;
  }
  return out;
}

/** One registered range of one process, and its copy. */
interface Tracked {
  name: string;
  start: bigint;
  end: bigint;
  store: number;
  /** Per page: copied into the store. */
  copied: Uint8Array;
  /** A scan failed part-way: nothing of the store counts. */
  broken: boolean;
}

/** Where a mapping's pages come from at freeze: which to read now, and how to make its page file later. */
export interface TrackedMapping {
  /** The pages (of the mapping) to read from the frozen process: not copied yet, or written since. */
  readNow: PageRuns;
  /**
   * Read `count` pages from `i` on (within `readNow`) from the frozen
   * process; they go to the store once it runs again (`flush`, before any
   * page file is made).
   */
  read(i: number, count: number): void;
  /** The mapping's page file, from the store: the runs given (page index, count), in order. */
  pageFile(writer: ImageWriter, runs: PageRuns): Pages;
  /**
   * A tracked mapping's populated pages (present or swapped) as runs (page
   * index, count), found with one PAGEMAP_SCAN instead of reading a pagemap
   * entry per page; undefined for a mapping read whole.
   */
  populated?: PageRuns;
}

/** Pages read while frozen wait in memory for their store up to this much; beyond, they are written at once. */
const MAX_HELD_BYTES = 64 * 2 ** 20;

/** The pre-dump of one process. */
export class MemoryTrack {
  private readonly tracked: Tracked[] = [];
  /** Copies of mappings not tracked, made at freeze. */
  private readonly extra: Tracked[] = [];
  private readonly pagemap: number;
  private readonly mem: number;
  private readonly buf = Buffer.alloc(CHUNK);
  copiedBytes = 0;
  private closed = false;
  /** Pages read while frozen, not yet in their store (`flush`): no file is written while the jail is stopped. */
  private held: { t: Tracked; off: number; data: Buffer }[] = [];
  private heldBytes = 0;

  constructor(
    readonly pid: number,
    private uffd: number,
    private readonly dir: string,
    private readonly mirror?: StoreMirror,
  ) {
    this.pagemap = openSync(`/proc/${pid}/pagemap`, 'r');
    this.mem = openSync(`/proc/${pid}/mem`, 'r');
  }

  /** Register and protect the process's trackable ranges, then copy their populated pages. */
  start(): void {
    for (const e of readMaps(this.pid)) {
      if (e.name?.startsWith('/')) {
        try {
          // Hashed while the process runs (a library takes milliseconds), for the dump to find known.
          const here = `/proc/${this.pid}/root${e.name}`;
          fileHashes.of(here, statSync(here));
        } catch {
          // gone or not a file: the dump says so
        }
      }
      if (!trackable(e)) continue;
      const populated = ranges(addon().pagemapScan(this.pagemap, e.start, e.end, 0, 0, PAGE_IS_PRESENT | PAGE_IS_SWAPPED, PAGE_IS_PRESENT | PAGE_IS_SWAPPED));
      const used = populated.reduce((n, [a, b]) => n + (b - a), 0n);
      const size = e.end - e.start;
      if (size > BigInt(MIN_SPARSE) && used * BigInt(SPARSE_RATIO) < size) continue;
      if (addon().uffdRange(this.uffd, OP_REGISTER, e.start, size)) continue; // not eligible here: copied at freeze
      const name = `${this.pid}-${this.tracked.length}`;
      const store = openSync(join(this.dir, name), 'wx+', 0o600);
      const t: Tracked = { name, start: e.start, end: e.end, store, copied: new Uint8Array(Number(size / BigInt(PAGE_SIZE))), broken: false };
      this.tracked.push(t);
      const err = addon().uffdRange(this.uffd, OP_PROTECT, e.start, size);
      if (err) throw new Error(`UFFDIO_WRITEPROTECT of 0x${e.start.toString(16)}: errno ${err}`);
      // Populated before the protection, or since: read after it, so any later write is seen.
      for (const [a, b] of ranges(addon().pagemapScan(this.pagemap, e.start, e.end, 0, 0, PAGE_IS_PRESENT | PAGE_IS_SWAPPED, PAGE_IS_PRESENT | PAGE_IS_SWAPPED))) {
        this.copy(t, a, b, true);
      }
    }
  }

  /** One round: the pages written since the last, protected again and copied. Bytes copied. */
  round(): number {
    let bytes = 0;
    for (const t of this.tracked) {
      if (t.broken) continue;
      let written: [bigint, bigint][];
      try {
        written = ranges(addon().pagemapScan(this.pagemap, t.start, t.end, PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC, PAGE_IS_WRITTEN, 0, PAGE_IS_WRITTEN));
      } catch (e) {
        // Part of the range was unmapped or replaced. The scan may have protected pages again
        // before it failed, without saying which: no copy of this range counts, all is read at freeze.
        if (!(isNativeError(e) && (e.code === 'EPERM' || e.code === 'EINVAL'))) throw e;
        t.broken = true;
        continue;
      }
      for (const [a, b] of written) bytes += this.copy(t, a, b, true);
    }
    return bytes;
  }

  /**
   * Copy [a, b) of range `t` into its store; `running`: a page unmapped
   * meanwhile is left uncopied (read at freeze if there). Frozen (not
   * `running`), the pages are only read now and written by `flush`.
   */
  private copy(t: Tracked, a: bigint, b: bigint, running = false): number {
    for (let at = a; at < b; ) {
      const len = Number(b - at > BigInt(CHUNK) ? BigInt(CHUNK) : b - at);
      const off = Number(at - t.start);
      if (!running && this.heldBytes + len > MAX_HELD_BYTES) this.flush();
      const buf = running ? this.buf.subarray(0, len) : Buffer.allocUnsafe(len);
      try {
        pageIo.read(this.mem, this.pid, at, buf);
      } catch (e) {
        if (!running) throw e;
        t.copied.fill(0, off / PAGE_SIZE, (off + len) / PAGE_SIZE);
        at += BigInt(len);
        continue;
      }
      if (running) this.store(t, off, buf);
      else {
        this.held.push({ t, off, data: buf });
        this.heldBytes += len;
      }
      if (t.copied.length) t.copied.fill(1, off / PAGE_SIZE, (off + len) / PAGE_SIZE);
      at += BigInt(len);
    }
    this.copiedBytes += Number(b - a);
    return Number(b - a);
  }

  /** Write `data`, of range `t` at `off`, into its store. */
  private store(t: Tracked, off: number, data: Buffer): void {
    this.storeFile(t);
    // Natively: in pieces small enough that the pages written into later, while the jail is stopped, cost little (pagecopy.c).
    pageCopyAddon().pwriteAll(t.store, [data], Float64Array.of(off));
    this.mirror?.copied(t.name, t.store, off, data.length, Number(t.end - t.start));
  }

  /** Range `t`'s store, made on its first write. */
  private storeFile(t: Tracked): number {
    if (t.store < 0) t.store = openSync(join(this.dir, t.name), 'wx+', 0o600);
    return t.store;
  }

  /**
   * Write the pages read while frozen into their stores (in the order read:
   * a page read twice ends as read last), each store's in one native call:
   * they are mostly single pages, hundreds of them while the jail is stopped.
   */
  flush(): void {
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    const byStore = new Map<Tracked, { off: number; data: Buffer }[]>();
    for (const { t, off, data } of held) {
      const pieces = byStore.get(t);
      if (pieces) pieces.push({ off, data });
      else byStore.set(t, [{ off, data }]);
    }
    for (const [t, pieces] of byStore) {
      pageCopyAddon().pwriteAll(this.storeFile(t), pieces.map((p) => p.data), Float64Array.from(pieces, (p) => p.off));
      for (const { off, data } of pieces) this.mirror?.copied(t.name, t.store, off, data.length, Number(t.end - t.start));
    }
  }

  /**
   * At freeze: the mapping's pages as tracked, or null when it is not (not
   * registered, or changed since: it is read whole, as without a pre-dump).
   */
  mapping(e: MapsEntry): TrackedMapping | null {
    const t = this.tracked.find((x) => e.start >= x.start && e.end <= x.end);
    if (!t || t.broken) return null;
    const page = (at: bigint): number => Number((at - e.start) / BigInt(PAGE_SIZE));
    const asRuns = (rs: [bigint, bigint][]): PageRuns => rs.map(([a, b]): [number, number] => [page(a), page(b) - page(a)]);
    // One walk of the page tables for both questions (each walk of 1 GiB costs ms), its ranges split by category.
    const wrote = PAGE_IS_WRITTEN | PAGE_IS_PFNZERO;
    const populatedBits = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
    let scan: Buffer;
    try {
      // No WP_MATCHING: the process is frozen, nothing needs protecting again. The zero page too:
      // a page dropped (MADV_DONTNEED) and read since is the zero page, still protected.
      scan = addon().pagemapScan(this.pagemap, e.start, e.end, PM_SCAN_CHECK_WPASYNC, 0, wrote | populatedBits, wrote | populatedBits);
    } catch (err) {
      if (isNativeError(err) && (err.code === 'EPERM' || err.code === 'EINVAL')) return null;
      throw err;
    }
    const written = mergeRuns(asRuns(ranges(scan, wrote)));
    const base = Number((e.start - t.start) / BigInt(PAGE_SIZE));
    const pages = Number((e.end - e.start) / BigInt(PAGE_SIZE));
    const notCopied = runsWhere(t.copied.subarray(base, base + pages), 0);
    const populated = mergeRuns(asRuns(ranges(scan, populatedBits)));
    return { ...this.view(t, e, unionRuns(notCopied, written)), populated };
  }

  /**
   * At freeze, a mapping not tracked: read whole into a copy of its own, its
   * page file written later too (no fsync while the jail is stopped).
   */
  untracked(e: MapsEntry): TrackedMapping {
    // Its file is made on the first page read: most such mappings have no page of their own.
    const t: Tracked = { name: `${this.pid}-x${this.extra.length}`, start: e.start, end: e.end, store: -1, copied: new Uint8Array(0), broken: false };
    this.extra.push(t);
    return this.view(t, e, [[0, Number((e.end - e.start) / BigInt(PAGE_SIZE))]]);
  }

  private view(t: Tracked, e: MapsEntry, readNow: PageRuns): TrackedMapping {
    const base = Number((e.start - t.start) / BigInt(PAGE_SIZE));
    const pageOff = (i: number): bigint => e.start + BigInt(i * PAGE_SIZE);
    return {
      readNow,
      read: (i, count) => {
        this.copy(t, pageOff(i), pageOff(i + count));
      },
      pageFile: (writer, runs) => {
        this.flush();
        const w = writer.pageFile();
        const [first] = runs;
        if (this.mirror?.chunkDigests && runs.length === 1 && base + first![0] === 0 && t.store >= 0) {
          // The page file is the store's first pages, all of it: the receiver links its copy; its digests are kept.
          const size = first![1] * PAGE_SIZE;
          const sums = fstatSync(t.store).size === size ? this.mirror.chunkDigests(t.name, size) : null;
          if (sums) {
            const pages = w.described(runs, size, sums.chunk, sums.sums);
            this.mirror.pageFile(pages.file, pages.size, t.name, [[0, first![1]]]);
            return pages;
          }
        }
        for (const [first, count] of runs) {
          for (let done = 0; done < count; ) {
            const n = Math.min(count - done, CHUNK / PAGE_SIZE);
            const buf = pageBuffer().subarray(0, n * PAGE_SIZE);
            const pos = (base + first + done) * PAGE_SIZE;
            for (let off = 0; off < buf.length; ) {
              const got = readSync(t.store, buf, off, buf.length - off, pos + off);
              if (got === 0) throw new Error(`the pre-dump copy of process ${this.pid} ended early`);
              off += got;
            }
            w.append(first + done, buf);
            done += n;
          }
        }
        const pages = w.close();
        this.mirror?.pageFile(pages.file, pages.size, t.name, runs.map(([first, count]) => [base + first, count]));
        return pages;
      },
    };
  }

  /** Stop tracking writes: unregister (closing the userfaultfd alone would too); the copies stay. */
  untrack(): void {
    if (this.uffd < 0) return;
    for (const t of this.tracked) addon().uffdRange(this.uffd, OP_UNREGISTER, t.start, t.end - t.start);
    closeSync(this.uffd);
    this.uffd = -1;
  }

  /** Stop tracking, close and free the copies. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.held = [];
    try {
      this.untrack();
    } finally {
      for (const t of [...this.tracked, ...this.extra]) if (t.store >= 0) closeSync(t.store);
      closeSync(this.pagemap);
      closeSync(this.mem);
    }
  }
}

/** A userfaultfd of process `pid`'s address space, held by vjail alone. */
async function userfaultfdOf(pid: number): Promise<number> {
  const t = await Tracee.seize(pid);
  let fd: number;
  try {
    const inTarget = Number(await t.syscallOk('userfaultfd', SYS_USERFAULTFD, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY));
    try {
      const pidfd = sysOk(`pidfd_open(${pid})`, SYS.pidfd_open, pid, 0);
      try {
        fd = pidfdGetfd(pidfd, inTarget);
      } finally {
        closeSync(pidfd);
      }
    } finally {
      await t.syscall(SYS.close, inTarget);
    }
  } finally {
    t.release();
  }
  try {
    addon().uffdApi(fd, FEATURES);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  return fd;
}

/** Copies are kept in a directory named so, with vjail's pid (`removeStale`). */
const STORE_PREFIX = '.vjail-pre-dump-';

/** Copies left behind by a vjail that was killed (SIGKILL: nothing of it ran to remove them). */
function removeStale(parent: string): void {
  let names: string[];
  try {
    names = readdirSync(parent);
  } catch {
    return;
  }
  for (const name of names) {
    const pid = name.startsWith(STORE_PREFIX) ? Number(name.slice(STORE_PREFIX.length).split('-')[0]) : NaN;
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
      continue; // its vjail still runs
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') continue;
    }
    rmSync(join(parent, name), { recursive: true, force: true });
  }
}

/** The pre-dump of a jail: one MemoryTrack per process; `close` on every path. */
export class PreDump {
  private readonly tracks = new Map<number, MemoryTrack>();
  private dir: string | undefined;
  rounds = 0;
  lastBytes = 0;

  /** The process's track, if it was pre-dumped. */
  forPid(pid: number): MemoryTrack | undefined {
    return this.tracks.get(pid);
  }

  get copiedBytes(): number {
    return [...this.tracks.values()].reduce((n, t) => n + t.copiedBytes, 0);
  }

  async start(pids: number[], opts: PreDumpOptions): Promise<void> {
    removeStale(dirname(opts.imageDir));
    this.dir = mkdtempSync(join(dirname(opts.imageDir), `${STORE_PREFIX}${process.pid}-`));
    new OffThreadHash().digest(); // start the hashing thread now, not while the jail is stopped
    const report = opts.report ?? (() => {});
    for (const pid of pids) {
      throwIfInterrupted();
      let uffd: number;
      try {
        uffd = await userfaultfdOf(pid);
      } catch (e) {
        report(`process ${pid} is not tracked (${e instanceof Error ? e.message : String(e)}): its memory is copied while frozen`);
        continue;
      }
      const track = new MemoryTrack(pid, uffd, this.dir, opts.mirror);
      this.tracks.set(pid, track);
      this.guard(track, report, () => track.start());
    }
    await opts.mirror?.round();
    const max = opts.rounds ?? DEFAULT_ROUNDS;
    while (this.rounds < max && this.tracks.size) {
      throwIfInterrupted();
      let bytes = 0;
      for (const t of [...this.tracks.values()]) bytes += this.guard(t, report, () => t.round()) ?? 0;
      this.rounds++;
      this.lastBytes = bytes;
      await opts.mirror?.round();
      report(`round ${this.rounds}: ${(bytes / 2 ** 20).toFixed(1)} MiB written since the last${opts.mirror ? ', sent' : ''}`);
      if (bytes <= SMALL_DIRTY) break;
    }
  }

  /** Stop tracking writes in every process (the copies stay for `MemoryTrack.mapping`). */
  untrack(): void {
    for (const t of this.tracks.values()) t.untrack();
  }

  /**
   * Run a step of one process's tracking; if it fails (the process ended, a
   * range it cannot take), stop tracking it: its memory is read while frozen.
   */
  private guard<T>(track: MemoryTrack, report: (line: string) => void, fn: () => T): T | undefined {
    try {
      return fn();
    } catch (e) {
      track.close();
      this.tracks.delete(track.pid);
      report(`process ${track.pid} is no longer tracked (${e instanceof Error ? e.message : String(e)}): its memory is copied while frozen`);
      return undefined;
    }
  }

  close(): void {
    for (const t of this.tracks.values()) {
      try {
        t.close();
      } catch {
        // the others still close
      }
    }
    this.tracks.clear();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    this.dir = undefined;
  }
}

/**
 * Start a pre-dump of these processes (running, not held): write tracking,
 * a first copy and up to `rounds` rounds. Null where the kernel cannot track
 * writes (`dirtyTrackingUnsupported` says why). Failures close what was
 * started: the processes run on as before.
 */
export async function preDump(pids: number[], opts: PreDumpOptions): Promise<PreDump | null> {
  if (dirtyTrackingUnsupported() !== null) return null;
  const p = new PreDump();
  try {
    await p.start(pids, opts);
  } catch (e) {
    p.close();
    throw e;
  }
  return p;
}

/** What a checkpoint asks of step 1: nothing, or a pre-dump (with at most `rounds` rounds). */
export type PreDumpRequest = boolean | { rounds?: number; mirror?: StoreMirror } | undefined;

/**
 * Step 1 of a checkpoint as its report says it: the pre-dump when asked for
 * and possible here, else null, saying why every page is copied frozen.
 */
export async function preDumpStep(pids: number[], ask: PreDumpRequest, imageDir: string, report: (detail: string) => void): Promise<PreDump | null> {
  const why = dirtyTrackingUnsupported();
  const softDirty = hasSoftDirty() ? '' : '; this kernel has no soft-dirty';
  if (!ask) {
    report(`skipped: not asked for (--pre-dump${why ? `, not possible here: ${why}` : ''}${softDirty}); all pages are copied while frozen`);
    return null;
  }
  if (why) {
    report(`not possible here (${why}${softDirty}): all pages are copied while frozen`);
    return null;
  }
  const started = performance.now();
  const rounds = typeof ask === 'object' ? ask.rounds : undefined;
  const mirror = typeof ask === 'object' ? ask.mirror : undefined;
  const p = await preDump(pids, { rounds, mirror, imageDir, report: (line) => report(line) });
  if (!p) return null;
  report(`${(p.copiedBytes / 2 ** 20).toFixed(1)} MiB copied while running in ${((performance.now() - started) / 1000).toFixed(2)} s (${p.rounds} round(s) after the first copy; the last found ${(p.lastBytes / 2 ** 20).toFixed(1)} MiB written)`);
  return p;
}
