/**
 * Memory advice read before the freeze (with --pre-dump), trusted while the
 * jail is stopped only if nothing can have changed it meanwhile: the kernel
 * walks every page table to write /proc/PID/smaps (tens of ms a GiB), which
 * would otherwise be read while the jail is stopped.
 *
 * The jail's supervisor counts the calls that change advice in a memfd
 * named "vjail-advice" (native/advicewatch.h; the plan notifies them:
 * src/plan/advice.ts). Advice read early is used for a process only if,
 * once it is held:
 * - the count is what it was before the early read, and no ring was made;
 * - no call counted before the read could still have been running then
 *   (each marked thread had made another call, was gone, or waited in
 *   another syscall);
 * - its mappings are those the early read listed (a mapping made again in
 *   the same place would be new), and its locked size (VmLck) is the same
 *   (mlockall(MCL_FUTURE) locks new mappings without a call).
 * Otherwise smaps is read while it is held, as without the watch.
 */
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, readSync } from 'node:fs';
import { readSmaps } from './advice.js';

/** The memfd's layout (struct aw_shared in native/advicewatch.h). */
const MAGIC = 0x61647677;
const VERSION = 1;
const PENDING = 64;
const SIZE = 24 + 4 * PENDING;
const NAME = '/memfd:vjail-advice (deleted)';

/** Syscall numbers (x86_64 and i386) that change advice: a thread waiting in one may not be done. */
const ADVICE_NRS = new Set([28, 440, 9, 149, 150, 151, 152, 325, 425, 219, 192, 90, 153, 376]);

interface WatchState {
  gen: bigint;
  untrusted: boolean;
  pending: number[];
}

class AdviceWatch {
  private constructor(private readonly fd: number) {}

  /** The watch of the supervisor `pid`, if it keeps exactly one (a supervisor of several jails: whose is whose is not known). */
  static open(supervisorPid: number): AdviceWatch | null {
    const found: string[] = [];
    try {
      for (const fd of readdirSync(`/proc/${supervisorPid}/fd`)) {
        try {
          if (readlinkSync(`/proc/${supervisorPid}/fd/${fd}`) === NAME) found.push(fd);
        } catch {
          // closed meanwhile
        }
      }
    } catch {
      return null;
    }
    if (found.length !== 1) return null;
    let fd: number;
    try {
      fd = openSync(`/proc/${supervisorPid}/fd/${found[0]}`, 'r');
    } catch {
      return null;
    }
    const head = Buffer.alloc(8);
    if (readSync(fd, head, 0, 8, 0) !== 8 || head.readUInt32LE(0) !== MAGIC || head.readUInt32LE(4) !== VERSION) {
      closeSync(fd);
      return null;
    }
    return new AdviceWatch(fd);
  }

  /** The count first, then the rest (the supervisor marks a thread before it counts its call). */
  read(): WatchState {
    const gen = Buffer.alloc(8);
    const rest = Buffer.alloc(SIZE - 16);
    if (readSync(this.fd, gen, 0, 8, 8) !== 8 || readSync(this.fd, rest, 0, rest.length, 16) !== rest.length) return { gen: -1n, untrusted: true, pending: [] };
    const pending: number[] = [];
    for (let i = 0; i < PENDING; i++) {
      const tid = rest.readInt32LE(8 + 4 * i);
      if (tid > 0) pending.push(tid);
    }
    return { gen: gen.readBigUInt64LE(0), untrusted: rest.readUInt32LE(0) !== 0 || rest.readUInt32LE(4) !== 0, pending };
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** The thread's last call that changes advice has returned: it is gone, or waits in (or is stopped out of) another call. */
function callOver(tid: number): boolean {
  let text: string;
  try {
    text = readFileSync(`/proc/${tid}/syscall`, 'utf8');
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
  const nr = Number(text.split(' ')[0]);
  // "running": somewhere, maybe still in that call.
  return Number.isInteger(nr) && !ADVICE_NRS.has(nr);
}

const vmLocked = (pid: number): string => /^VmLck:\s*(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '';

/** The mapping lines of an smaps text (each mapping's first line is its /proc/PID/maps line). */
const mapLines = (smaps: string): string[] => smaps.split('\n').filter((l) => /^[0-9a-f]+-[0-9a-f]+ /.test(l)).map((l) => l.trimEnd());
const sameLines = (x: string[], y: string[]): boolean => x.length === y.length && x.every((l, i) => l === y[i]);

export class EarlyAdvice {
  private used = 0;
  private readAgain = 0;

  private constructor(
    private readonly watch: AdviceWatch,
    private readonly gen: bigint,
    private readonly early: Map<number, { smaps: string; locked: string }>,
  ) {}

  /**
   * Read every process's smaps while the jail runs, if its supervisor
   * watches the calls that change advice and none can be under way; else null.
   */
  static async read(supervisorPid: number, pids: number[]): Promise<EarlyAdvice | null> {
    const watch = AdviceWatch.open(supervisorPid);
    if (!watch) return null;
    const before = watch.read();
    if (before.untrusted || !before.pending.every(callOver)) {
      watch.close();
      return null;
    }
    const early = new Map<number, { smaps: string; locked: string }>();
    try {
      for (const pid of pids) {
        const locked = vmLocked(pid);
        early.set(pid, { smaps: await readSmaps(pid), locked });
      }
    } catch {
      watch.close();
      return null; // a process ended meanwhile: read while held
    }
    return new EarlyAdvice(watch, before.gen, early);
  }

  /**
   * The early smaps of `pid`, held now, if still exact (see the top of this
   * file); else undefined. `maps` is its /proc/PID/maps now.
   */
  smapsIfUnchanged(pid: number, maps: string): string | undefined {
    const e = this.early.get(pid);
    const now = this.watch.read();
    const unchanged = e !== undefined && !now.untrusted && now.gen === this.gen && vmLocked(pid) === e.locked && sameLines(mapLines(e.smaps), mapLines(maps));
    if (unchanged) this.used++;
    else this.readAgain++;
    return unchanged ? e.smaps : undefined;
  }

  /** For the dump step's line: how the advice of the processes held was had. */
  summary(): string {
    if (!this.readAgain) return 'memory advice as read while running';
    return `memory advice read again while stopped for ${this.readAgain} process(es) (changed or new since)`;
  }

  close(): void {
    this.watch.close();
  }
}
