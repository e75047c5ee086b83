/**
 * Lazy restore of private anonymous memory: its mappings are made, but their
 * pages are left out; the restored process gets them when it touches them,
 * and from a background prefetch (native/lazypages.c), so it runs as soon
 * as everything else is in place.
 *
 * The userfaultfd belongs to the memory it serves, so it is made inside the
 * restored process (injected userfaultfd, UFFDIO_API, UFFDIO_REGISTER once
 * the mappings exist and before anything else of the restore runs there),
 * taken to our side with pidfd_getfd, and closed in the process: the
 * workload never sees it. Our thread serves it from then on, also while the
 * rest of the restore still runs (an injected call may touch such memory).
 *
 * Checksums: a page file with per-chunk sha256 (`chunks`, written since
 * version 5) has each chunk checked just before its pages are placed;
 * hashing the whole image first would cost what an eager restore's loading
 * does. A file without them is hashed whole here, before anything runs.
 */
import { closeSync } from 'node:fs';
import { lazyAddon, type LazyStats } from '../../native/lazypages.js';
import { chunkSums, ImageError, type Mapping, type OpenedImage, PAGE_SIZE, fromHex, openPageFile, sha256Fd } from '../../image/format.js';
import { type Tracee, TraceeError } from '../tracee.js';
import { SYS } from '../syscalls.js';
import type { Scratch } from './memory.js';

const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const UFFD_API = 0xaan;
const UFFD_FEATURE_EVENT_FORK = 1n << 1n;
const UFFD_FEATURE_EVENT_REMAP = 1n << 2n;
const UFFD_FEATURE_EVENT_REMOVE = 1n << 3n;
const UFFD_FEATURE_EVENT_UNMAP = 1n << 6n;
/** Fork, mremap, munmap and MADV_DONTNEED of lazy memory are followed (lazypages.c). */
const FEATURES = UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP;
/** _IOWR(0xAA, 0x3F, struct uffdio_api), _IOWR(0xAA, 0x00, struct uffdio_register). */
const UFFDIO_API = 0xc018aa3f;
const UFFDIO_REGISTER = 0xc020aa00;
const UFFDIO_REGISTER_MODE_MISSING = 1n;
/** sizeof(struct uffdio_register): range (start, len), mode, ioctls. */
const REGISTER_SIZE = 32;
const SYS_USERFAULTFD = 323;

export type { LazyStats } from '../../native/lazypages.js';

/** What a lazy restore leaves running: one server per restored process. */
export class LazyPages {
  private readonly live = new Set<object>();
  private readonly ended: Promise<void>[] = [];
  private failed: string | null = null;
  private onFail: ((error: string) => void) | null = null;
  readonly stats: LazyStats[] = [];

  /** Mappings restored lazily: private anonymous memory with pages of its own. */
  static eligible(m: Mapping): boolean {
    return !!m.pages && (m.kind === 'anon' || m.kind === 'heap') && m.perms[3] === 'p' && !m.file && m.object === undefined;
  }

  /** Register `maps` (already mapped, pages not loaded) in t's memory, and serve them from now on. */
  async start(t: Tracee, scratch: Scratch, image: OpenedImage, maps: Mapping[]): Promise<void> {
    if (maps.length === 0) return;
    // Files from before per-chunk checksums: checked whole, before anything runs.
    for (const m of maps) if (!m.pages!.chunks) verifyWhole(image, m);
    const uffd = await t.syscallOk('userfaultfd (lazy restore)', SYS_USERFAULTFD, O_CLOEXEC | O_NONBLOCK);
    try {
      const api = Buffer.alloc(24);
      api.writeBigUInt64LE(UFFD_API, 0);
      api.writeBigUInt64LE(FEATURES, 8);
      t.write(scratch.addr, api);
      await t.syscallOk('UFFDIO_API', SYS.ioctl, uffd, UFFDIO_API, scratch.addr);
      // One struct uffdio_register a mapping, side by side in the scratch page, registered in one batch of calls.
      const perPage = Math.floor(scratch.size / REGISTER_SIZE);
      for (let from = 0; from < maps.length; from += perPage) {
        const some = maps.slice(from, from + perPage);
        const regs = Buffer.alloc(some.length * REGISTER_SIZE);
        some.forEach((m, i) => {
          const start = fromHex(m.start);
          regs.writeBigUInt64LE(start, i * REGISTER_SIZE);
          regs.writeBigUInt64LE(fromHex(m.end) - start, i * REGISTER_SIZE + 8);
          regs.writeBigUInt64LE(UFFDIO_REGISTER_MODE_MISSING, i * REGISTER_SIZE + 16);
        });
        t.write(scratch.addr, regs);
        await t.syscallBatchOk((i) => `UFFDIO_REGISTER of ${some[i]!.start}`, SYS.ioctl, some.map((_, i) => [uffd, UFFDIO_REGISTER, scratch.addr + BigInt(i * REGISTER_SIZE)]));
      }
      const ranges = maps.map((m) => {
        const p = m.pages!;
        const start = fromHex(m.start);
        const runs = Buffer.alloc(p.runs.length * 8);
        p.runs.forEach(([first, count], i) => {
          runs.writeUInt32LE(first, i * 8);
          runs.writeUInt32LE(count, i * 8 + 4);
        });
        const chunkBytes = p.chunks?.size ?? 256 << 10;
        return {
          start, pages: Number((fromHex(m.end) - start) / BigInt(PAGE_SIZE)), fd: openPageFile(image, p), runs,
          chunkPages: chunkBytes / PAGE_SIZE, sums: chunkSums(image, p),
        };
      });
      let resolve!: () => void;
      this.ended.push(new Promise<void>((r) => (resolve = r)));
      try {
        const handle: object = lazyAddon().lazyStart(t.pid, Number(uffd), ranges, (kind, error, stats) => {
          if (kind === 'failed') return this.fail(error!);
          this.live.delete(handle);
          this.stats.push(stats);
          if (error) this.fail(error);
          resolve();
        });
        this.live.add(handle);
      } catch (e) {
        for (const r of ranges) closeSync(r.fd);
        resolve();
        throw new TraceeError(`lazy restore: ${(e as Error).message}`);
      }
    } finally {
      await t.syscall(SYS.close, uffd);
    }
  }

  /** A page could not be given: the process was killed; `onFail` kills the jail and says why. */
  private fail(error: string): void {
    if (this.failed !== null) return;
    this.failed = error;
    this.onFail?.(error);
  }

  private stopOne(handle: object): void {
    if (this.live.has(handle)) lazyAddon().lazyStop(handle);
  }

  /**
   * After a successful restore: `onFail(error)` is called if a page is ever
   * refused (it should kill the jail, then call `release`). Resolves with the
   * servers' statistics once every page is in place, or with the failure.
   */
  watch(onFail: (error: string) => void): Promise<{ error: string | null; stats: LazyStats[] }> {
    this.onFail = onFail;
    if (this.failed) onFail(this.failed);
    return Promise.all(this.ended).then(() => ({ error: this.failed, stats: this.stats }));
  }

  /** The processes run: place every page in the background from now on (until now, only what was touched). */
  prefetch(): void {
    for (const h of this.live) lazyAddon().lazyPrefetch(h);
  }

  /** Let go of every userfaultfd (the jail is dead, or the restore failed and its processes are killed). */
  release(): void {
    for (const h of [...this.live]) this.stopOne(h);
  }

  /** Resolves once every server has ended. */
  async settled(): Promise<void> {
    await Promise.all(this.ended);
  }
}

function verifyWhole(image: OpenedImage, m: Mapping): void {
  const fd = openPageFile(image, m.pages!);
  try {
    if (sha256Fd(fd) !== m.pages!.sha256) throw new ImageError(`${image.dir} is damaged: ${m.pages!.file} does not match its checksum`);
  } finally {
    closeSync(fd);
  }
}
