/**
 * Where the time of a checkpoint or restore goes, timed from the outside:
 * while a probe is active, the methods that move page data are wrapped with
 * timestamps (the checkpoint code itself reports steps, not their parts).
 *
 *   mem-read    Tracee.read and pageIo.read: process_vm_readv (pread of
 *               /proc/PID/mem where it cannot reach)
 *   mem-write   Tracee.write and pageIo.write: process_vm_writev (pwrite of
 *               /proc/PID/mem where it cannot reach)
 *   page-hash   the sha256 update of each page file as it is written
 *   page-write  PageFileWriter.append without its sha256: write(2) of page files
 *   page-fsync  PageFileWriter.close: fsync of each page file
 *   commit      ImageWriter.commit: manifest, fsync, header and manifest read
 *               back, page file sizes checked, rename
 *   file-read   fs.readSync of 64 KiB or more while `readsCount` is set:
 *               reading page files during a restore
 *   syscalls    Tracee.syscall: system calls injected into the process
 *
 * If a method is not there any more (the code changed shape), its part is
 * simply absent and the rows built from it say so.
 */
import type { Hash } from 'node:crypto';
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { performance } from 'node:perf_hooks';
import { pageIo } from '../src/checkpoint/pagecopy.js';
import { Tracee } from '../src/checkpoint/tracee.js';
import { ImageWriter, PageFileWriter } from '../src/image/format.js';

export type Part = 'mem-read' | 'mem-write' | 'page-hash' | 'page-write' | 'page-fsync' | 'commit' | 'file-read' | 'syscalls';

let active: Probe | undefined;

export class Probe {
  readonly ms = new Map<Part, number>();
  /** Count large fs.readSync calls as file-read (set while restore loads pages). */
  readsCount = false;

  add(part: Part, ms: number): void {
    this.ms.set(part, (this.ms.get(part) ?? 0) + ms);
  }

  get(part: Part): number {
    return this.ms.get(part) ?? 0;
  }
}

type AnyFn = (...args: unknown[]) => unknown;
const TIMED = Symbol('timed by the bench probe');

/** Wrap proto[name] so that, while a probe is active, its time (until its promise settles, if async) is added to `part`. */
function timeMethod(proto: object, name: string, part: Part): void {
  const target = proto as Record<string, AnyFn & { [TIMED]?: boolean }>;
  const orig = target[name];
  if (typeof orig !== 'function' || orig[TIMED]) return;
  const wrapped = function (this: unknown, ...args: unknown[]): unknown {
    const probe = active;
    if (!probe) return orig.apply(this, args);
    const t0 = performance.now();
    let async = false;
    try {
      const r = orig.apply(this, args);
      if (r instanceof Promise) {
        async = true;
        return r.finally(() => probe.add(part, performance.now() - t0));
      }
      return r;
    } finally {
      if (!async) probe.add(part, performance.now() - t0);
    }
  } as AnyFn & { [TIMED]?: boolean };
  wrapped[TIMED] = true;
  target[name] = wrapped;
}

/** PageFileWriter.append hashes and writes: split the two by timing its own hash object's update. */
function timeAppend(): void {
  const proto = PageFileWriter.prototype as unknown as Record<string, AnyFn & { [TIMED]?: boolean }>;
  const orig = proto.append;
  if (typeof orig !== 'function' || orig[TIMED]) return;
  const wrapped = function (this: { hash?: Hash & { [TIMED]?: boolean } }, ...args: unknown[]): unknown {
    const probe = active;
    if (!probe) return orig.apply(this, args);
    const h = this.hash;
    if (h && typeof h.update === 'function' && !h[TIMED]) {
      const update = h.update.bind(h) as AnyFn;
      h.update = ((...a: unknown[]) => {
        const t = performance.now();
        try {
          return update(...a);
        } finally {
          active?.add('page-hash', performance.now() - t);
        }
      }) as Hash['update'];
      h[TIMED] = true;
    }
    const hashBefore = probe.get('page-hash');
    const t0 = performance.now();
    try {
      return orig.apply(this, args);
    } finally {
      probe.add('page-write', performance.now() - t0 - (probe.get('page-hash') - hashBefore));
    }
  } as AnyFn & { [TIMED]?: boolean };
  wrapped[TIMED] = true;
  proto.append = wrapped;
}

function install(): void {
  timeMethod(Tracee.prototype, 'read', 'mem-read');
  timeMethod(pageIo, 'read', 'mem-read');
  timeMethod(Tracee.prototype, 'write', 'mem-write');
  timeMethod(pageIo, 'write', 'mem-write');
  timeMethod(Tracee.prototype, 'syscall', 'syscalls');
  timeMethod(PageFileWriter.prototype, 'close', 'page-fsync');
  timeMethod(ImageWriter.prototype, 'commit', 'commit');
  timeAppend();
}

/** Run `fn` with a fresh probe active; fs.readSync is wrapped only meanwhile. */
export async function probed<T>(fn: (probe: Probe) => Promise<T>): Promise<{ result: T; probe: Probe }> {
  install();
  const probe = new Probe();
  const readSync = fs.readSync;
  fs.readSync = function (this: unknown, ...args: unknown[]): number {
    const t0 = performance.now();
    const n = (readSync as AnyFn).apply(this, args) as number;
    if (probe.readsCount && n >= 64 * 1024) probe.add('file-read', performance.now() - t0);
    return n;
  } as typeof fs.readSync;
  syncBuiltinESMExports();
  active = probe;
  try {
    return { result: await fn(probe), probe };
  } finally {
    active = undefined;
    fs.readSync = readSync;
    syncBuiltinESMExports();
  }
}
