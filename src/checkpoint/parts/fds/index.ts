/**
 * Every descriptor of every process of the jail, 0-2 included: each points
 * at an open file description, saved once however many descriptors (in
 * however many processes) share it, by the first kind below that takes it.
 * What no kind can save is named, per process, in one report: the
 * external-state step of a checkpoint decides what happens to it.
 *
 * Restore makes every description again in vjail's own process, then
 * places each process's descriptors at their numbers through the restorer
 * (transfer.ts): descriptions shared at the checkpoint are shared again.
 */
import { closeSync, openSync, readlinkSync } from 'node:fs';
import { type KcmpAddon, kcmpAddon } from '../../../native/ptrace.js';
import { pidfdGetfd, sys, sysOk } from '../../../native/fdio.js';
import {
  type Description, type FdImage, ImageError, type ImageWriter, type LiveProcess, type OpenedImage, type PipeImage,
} from '../../../image/format.js';
import { SYS } from '../../syscalls.js';
import type { Tracee } from '../../tracee.js';
import { TraceeError } from '../../tracee.js';
import { chardevKind } from './chardev.js';
import { deletedKind } from './deleted.js';
import { addWatches, epollAdds, epollKind, epollMissing } from './epoll.js';
import { eventfdKind } from './eventfd.js';
import { externalKind } from './external.js';
import { fileKind } from './file.js';
import { inotifyKind } from './inotify.js';
import type { CollectContext, Created, CreateContext, FdKind, FdProbe } from './kind.js';
import { O_CLOEXEC, O_PATH, Unsaveable } from './kind.js';
import { memfdKind } from './memfd.js';
import { pidfdKind } from './pidfd.js';
import { fifoKind, pipeKind } from './pipe.js';
import { describeHolders, outsideHolders, probeFd, probeProcess } from './probe.js';
import { signalfdKind } from './signalfd.js';
import { stdioKind } from './stdio.js';
import { timerfdKind } from './timerfd.js';
import { inetKind } from './inet.js';
import { tcpKind } from './tcp-repair.js';
import { unixKind } from './unix.js';
import { closeAll, PASS_FD, runSteps, type Step } from './transfer.js';
import { prlimitSelf } from '../task.js';

/** In order: the first that matches a descriptor takes its description. */
const KINDS: FdKind<Description['kind']>[] = [
  stdioKind, memfdKind, deletedKind, fileKind, chardevKind, pipeKind, fifoKind, eventfdKind,
  signalfdKind, timerfdKind, epollKind, inotifyKind, pidfdKind, unixKind, inetKind, tcpKind, externalKind,
] as FdKind<Description['kind']>[];
const kindOf = (k: Description['kind']): FdKind<Description['kind']> => KINDS.find((x) => x.kind === k)!;

/** A descriptor whose description cannot be saved. */
export interface ExternalFd {
  /** Our PID of the holder. */
  pid: number;
  fd: number;
  key: string;
  reason: string;
  /** Unsaveable.transient: probably open for a moment only. */
  transient: boolean;
}

export interface FdCollection {
  descriptions: Description[];
  pipes: PipeImage[];
  /** Each live process's descriptors, by our PID. */
  fds: Map<number, FdImage[]>;
  /** What cannot be saved, one entry per descriptor. Their descriptions are `external` ones. */
  external: ExternalFd[];
  /**
   * Close what collection kept open (connections in repair mode); with
   * `runsOn` (the jail continues, or the checkpoint failed) undo first.
   */
  release(runsOn: boolean): void;
}

/**
 * Descriptors no kind takes, by their /proc link: why they cannot be saved
 * (named in the external-state report, and in docs/SUPPORT.md).
 */
export const REFUSED: { link: RegExp; what: string; reason: string }[] = [
  { link: /^anon_inode:\[io_uring\]$/, what: 'io_uring', reason: 'an io_uring instance (its rings and the requests in flight cannot be saved)' },
  { link: /^anon_inode:\[perf_event\]$/, what: 'perf events', reason: "a perf event (a counter of the kernel's)" },
  { link: /^anon_inode:\[userfaultfd\]$/, what: 'userfaultfd', reason: 'a userfaultfd (its registered ranges and pending faults cannot be saved)' },
  { link: /^anon_inode:bpf[-_]/, what: 'bpf maps, programs and links', reason: 'a bpf object (loaded into the kernel; not saved)' },
  { link: /^socket:/, what: 'other sockets (netlink, packet, ...)', reason: 'a socket of a kind not saved (netlink, packet, ...)' },
  { link: /^anon_inode:/, what: 'other anonymous inodes', reason: 'not saved yet' },
];

/** Why a descriptor (or a mapping of its object) no kind takes cannot be saved. */
export function unknownReason(link: string): string {
  const r = REFUSED.find((x) => x.link.test(link));
  if (!r) return `${link} (this kind of descriptor is not saved)`;
  return r.reason === 'not saved yet' ? `${link}: not saved yet` : r.reason;
}

/** What each kind saves, for docs/SUPPORT.md. */
export function descriptorKindDocs(): { what: string; how: string }[] {
  return KINDS.map((k) => k.doc);
}

/**
 * A key that every descriptor of one description shares (kcmp then tells
 * apart descriptions with the same key): fdinfo but for close-on-exec,
 * which is the descriptor's own, and for what changes by itself.
 */
function groupKey(p: FdProbe): string {
  // A timer's remaining time and count move while descriptors are read one after another.
  const info = p.info.replace(/^(flags|it_value|ticks):.*$/gm, '');
  return `${p.link}\n${p.st ? `${p.st.dev}:${p.st.ino}` : ''}\n${p.flags & ~O_CLOEXEC}\n${info}`;
}

/**
 * The group of `p`'s open file description among `groups` (same key), or
 * where a new one goes: kcmp orders descriptions, so the groups are kept in
 * its order and searched by halves. 250 descriptors of /dev/null, each opened
 * on its own, share a key: comparing each with every group was 31,000 kcmp
 * calls. Where the kernel gives no order (3; not for files since 3.5), that
 * key's groups are compared one by one from then on.
 */
function findGroup(kcmp: KcmpAddon, groups: FdProbe[][], p: FdProbe, unordered: WeakSet<FdProbe[][]>): { group?: FdProbe[]; at: number } {
  const linear = (): { group?: FdProbe[]; at: number } => {
    unordered.add(groups); // from now on this key's groups are in no order
    return { group: groups.find((g) => kcmp.kcmpFile(g[0]!.pid, g[0]!.fd, p.pid, p.fd)), at: groups.length };
  };
  if (unordered.has(groups)) return linear();
  let lo = 0;
  let hi = groups.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const first = groups[mid]![0]!;
    const order = kcmp.kcmpFileOrder(first.pid, first.fd, p.pid, p.fd);
    if (order === 0) return { group: groups[mid], at: mid };
    if (order === 3) return linear();
    if (order === 1) lo = mid + 1; // the group's description orders before p's
    else hi = mid;
  }
  return { at: lo };
}

/**
 * Collect the descriptors of the stopped processes `pids` (our PIDs).
 * `init`: our PID of the jail's vjail-init, whose fds 0-2 are the jail's
 * standard streams. Pipe contents go to the image as blobs. `imagePids`: every
 * process of the jail (zombies too), our PID to its PID in the image.
 */
export function collectFds(pids: number[], init: number | undefined, writer: ImageWriter, imagePids: Map<number, number> = new Map(), opts: { tcpEstablished?: boolean; outputPipes?: boolean } = {}): FdCollection {
  const kcmp = kcmpAddon();
  const perPid = new Map(pids.map((pid) => [pid, probeProcess(pid)]));
  const all = [...perPid.values()].flat();
  const stdio = init === undefined ? [] : [0, 1, 2].map((fd) => probeFd(init, fd));
  const pidfds = new Map<number, number>();
  const grabbed: number[] = [];
  const kept: { fd: number; resume: (kept: number) => void }[] = [];
  const release = (runsOn: boolean): void => {
    for (const k of kept.splice(0)) {
      if (runsOn) {
        try {
          k.resume(k.fd);
        } catch {
          // The connection ended meanwhile: nothing to undo.
        }
      }
      closeSync(k.fd);
    }
  };
  let outside: Map<string, number[]> | undefined;
  const outsideOf = (link: string): string | undefined => {
    if (!outside) {
      const exclude = new Set([...pids, process.pid]);
      outside = holdersOutside(all, exclude);
    }
    const holders = outside.get(link);
    return holders?.length ? describeHolders(holders) : undefined;
  };
  /** "pid:fd" to the description's id, once descriptors are grouped. */
  const idOf = new Map<string, number>();
  const ctx: CollectContext = {
    writer,
    imagePidOf: (pid) => imagePids.get(pid),
    descriptionOf: (pid, fd) => idOf.get(`${pid}:${fd}`),
    pipes: new Map(),
    all,
    grab(p) {
      let pidfd = pidfds.get(p.pid);
      if (pidfd === undefined) pidfds.set(p.pid, (pidfd = sysOk(`pidfd_open(${p.pid})`, SYS.pidfd_open, p.pid, 0)));
      const fd = pidfdGetfd(pidfd, p.fd);
      grabbed.push(fd);
      return fd;
    },
    heldOutside: outsideOf,
    tcpEstablished: opts.tcpEstablished ?? false,
    outputPipes: opts.outputPipes ?? false,
    keep(fd, resume) {
      const F_DUPFD_CLOEXEC = 1030;
      kept.push({ fd: sysOk('keeping a socket', SYS.fcntl, fd, F_DUPFD_CLOEXEC, 0), resume });
    },
    stdioOf(p) {
      for (const [n, s] of stdio.entries()) {
        if (!s || groupKey(s).split('\n')[1] !== groupKey(p).split('\n')[1] || s.link !== p.link) continue;
        if (kcmp.kcmpFile(init!, n, p.pid, p.fd)) return n;
      }
      return undefined;
    },
  };
  try {
    // Group descriptors by description: same key, then kcmp against each group's first.
    const groups: FdProbe[][] = [];
    const byKey = new Map<string, FdProbe[][]>();
    const unordered = new WeakSet<FdProbe[][]>();
    for (const p of all) {
      const key = groupKey(p);
      const candidates = byKey.get(key) ?? [];
      const { group, at } = findGroup(kcmp, candidates, p, unordered);
      if (group) group.push(p);
      else {
        const g = [p];
        candidates.splice(at, 0, g);
        byKey.set(key, candidates);
        groups.push(g);
      }
    }
    // A description's id is its group's index.
    groups.forEach((g, i) => g.forEach((h) => idOf.set(`${h.pid}:${h.fd}`, i)));
    const descriptions: Description[] = [];
    const external: ExternalFd[] = [];
    const fds = new Map<number, FdImage[]>(pids.map((pid) => [pid, []]));
    for (const group of groups) {
      const first = group[0]!;
      const id = descriptions.length;
      const flags = first.flags & ~O_CLOEXEC;
      const kind = KINDS.find((k) => k.match(first, ctx));
      const saved = kind ? kind.collect(first, ctx) : new Unsaveable(unknownReason(first.link), first.link);
      if (saved instanceof Unsaveable) {
        descriptions.push({ kind: 'external', id, flags, key: saved.key, reason: saved.reason });
        for (const h of group) external.push({ pid: h.pid, fd: h.fd, key: saved.key, reason: saved.reason, transient: saved.transient });
      } else {
        descriptions.push({ kind: kind!.kind, id, flags, ...saved } as Description);
      }
      for (const h of group) fds.get(h.pid)!.push({ fd: h.fd, cloexec: (h.flags & O_CLOEXEC) !== 0, description: id });
    }
    for (const list of fds.values()) list.sort((a, b) => a.fd - b.fd);
    return { descriptions, pipes: [...ctx.pipes.values()], fds, external, release };
  } catch (e) {
    release(true);
    throw e;
  } finally {
    closeAll([...grabbed, ...pidfds.values()]);
  }
}

/**
 * Outside processes holding the jail's pipes and sockets (by link) and its
 * FIFOs (keyed `fifo:DEV:INO`): one scan of /proc for both.
 */
function holdersOutside(jailed: FdProbe[], exclude: Set<number>): Map<string, number[]> {
  const fifoKeys = new Map(jailed.flatMap((p) => (p.st?.isFIFO() ? [[p.link, `fifo:${p.st.dev}:${p.st.ino}`] as const] : [])));
  const out = outsideHolders(exclude, [...fifoKeys.keys()]);
  for (const [link, key] of fifoKeys) {
    const holders = out.get(link);
    if (!holders) continue;
    out.delete(link);
    out.set(key, [...(out.get(key) ?? []), ...holders]);
  }
  return out;
}

/** One line per descriptor that cannot be saved, for the external-state report. */
export function describeExternal(items: ExternalFd[], nsPidOf: (pid: number) => number, commOf: (pid: number) => string): string[] {
  return items.map((x) => `process ${nsPidOf(x.pid)} (${commOf(x.pid)}) fd ${x.fd}: ${x.reason} [${x.key}]`);
}

/** Before anything is started: everything the image's descriptions need is here. */
export function checkFds(image: OpenedImage, inherit: Map<string, number>, root = ''): void {
  const where = new Map<number, string>();
  for (const p of image.manifest.processes) {
    if (p.state !== 'live') continue;
    for (const f of p.fds) if (!where.has(f.description)) where.set(f.description, `file descriptor ${f.fd} of process ${p.pid}`);
  }
  for (const d of image.manifest.descriptions) kindOf(d.kind).check?.(d as never, where.get(d.id) ?? `description ${d.id}`, image, inherit, root);
}

/** Status flags F_SETFL can change; the rest of a description's flags come with how it was made. */
const SETTABLE = 0o2000 | 0o4000 | 0o20000 | 0o40000 | 0o1000000;
const F_GETFL = 3;
const F_SETFL = 4;

/** The highest descriptor number any process of the image holds. */
function highestFd(image: OpenedImage): number {
  let max = 2;
  for (const p of image.manifest.processes) if (p.state === 'live') for (const f of p.fds) max = Math.max(max, f.fd);
  return max;
}

const RLIMIT_NOFILE = 7;

/**
 * Restore's descriptor handover, set up in the restorer before any other
 * process is made from it: the socket moves above every number the image
 * uses (so placing descriptors never overwrites it), and the soft limit on
 * open files is raised to cover those numbers (the image's own limits are
 * set later). Returns the socket's number in the restorer and its copies.
 */
export async function prepareFds(root: Tracee, scratch: { addr: bigint }, image: OpenedImage, restorer: string, sock: number): Promise<number> {
  const at = Math.max(highestFd(image) + 1, PASS_FD + 1);
  const need = BigInt(at + 4);
  if ((await prlimitSelf(root, RLIMIT_NOFILE, 0n, scratch.addr)) < 0n) throw new TraceeError('reading RLIMIT_NOFILE in the restorer failed');
  const lim = root.read(scratch.addr, 16);
  const soft = lim.readBigUInt64LE(0);
  const hard = lim.readBigUInt64LE(8);
  if (soft < need) {
    if (hard < need) throw new ImageError(`the image uses descriptor ${at - 1}, above this jail's hard limit on open files (${hard}); raise it (ulimit -Hn) to restore`);
    lim.writeBigUInt64LE(need, 0);
    root.write(scratch.addr, lim);
    if ((await prlimitSelf(root, RLIMIT_NOFILE, scratch.addr, 0n)) < 0n) throw new TraceeError('raising RLIMIT_NOFILE for the restore failed');
  }
  await runSteps(root, restorer, sock, PASS_FD, [{ op: 'moveSock', arg: at }, { op: 'done' }]);
  return at;
}

const CLONE_NEWNET = 0x40000000;

/**
 * Run `make` with this thread in the network namespace of process `pid`
 * (a container's own): sockets are made here and handed over, and a socket
 * belongs to the namespace it was made in. Synchronous, so nothing else of
 * ours runs meanwhile; the thread is back in its own before this returns.
 */
function inNetworkOf(pid: number, make: () => void): void {
  const theirs = `/proc/${pid}/ns/net`;
  const ours = '/proc/thread-self/ns/net';
  if (readlinkSync(theirs) === readlinkSync(ours)) return make();
  const back = openSync(ours, 'r');
  const there = openSync(theirs, 'r');
  try {
    sysOk(`setns into the network namespace of process ${pid}`, SYS.setns, there, CLONE_NEWNET);
    try {
      make();
    } finally {
      sysOk('setns back into our network namespace', SYS.setns, back, CLONE_NEWNET);
    }
  } finally {
    closeSync(there);
    closeSync(back);
  }
}

/**
 * Make every description of the image in this process and place each live
 * process's descriptors. `shells`: the image's live processes, each still a
 * copy of the restorer holding the socket at `sockAt`.
 */
export async function placeFds(
  shells: { image: LiveProcess; tracee: Tracee; scratch: { addr: bigint } }[],
  image: OpenedImage,
  opts: { restorer: string; sock: number; sockAt: number; rootPid: number; inherit: Map<string, number>; pids: Map<number, number> },
): Promise<void> {
  const objects = new Map<string, unknown>();
  const later: number[] = [];
  const made = new Map<number, Created>();
  const ctx: CreateContext = {
    image,
    rootPid: opts.rootPid,
    inherit: opts.inherit,
    once<T>(key: string, make: () => T): T {
      if (!objects.has(key)) objects.set(key, make());
      return objects.get(key) as T;
    },
    closeLater: (fd) => later.push(fd),
    hostPidOf: (pid) => opts.pids.get(pid),
  };
  try {
    const all = image.manifest.descriptions;
    inNetworkOf(opts.rootPid, () => {
      for (const d of [...all.filter((x) => !kindOf(x.kind).late), ...all.filter((x) => kindOf(x.kind).late)]) {
        const c = kindOf(d.kind).create(d as never, ctx);
        if ('fd' in c) {
          later.push(c.fd);
          if (d.kind !== 'external' && (d.flags & O_PATH) === 0) setStatusFlags(c.fd, d.flags, d.kind);
        }
        made.set(d.id, c);
      }
    });
    const S = opts.sockAt;
    const byId = new Map(image.manifest.descriptions.map((d) => [d.id, d]));
    const watched = new Set<string>();
    for (const { image: p, tracee, scratch } of shells) {
      const steps: Step[] = [0, 1, 2].map((n) => ({ op: 'dup', arg: n, target: S + 1 + n, cloexec: true }));
      const targets = new Set<number>();
      for (const f of p.fds) {
        const c = made.get(f.description)!;
        targets.add(f.fd);
        steps.push('fd' in c ? { op: 'install', target: f.fd, cloexec: f.cloexec, fd: c.fd } : { op: 'dup', arg: S + 1 + c.stdio, target: f.fd, cloexec: f.cloexec });
      }
      for (const n of [0, 1, 2]) if (!targets.has(n)) steps.push({ op: 'close', target: n });
      for (const n of [1, 2, 3]) steps.push({ op: 'close', target: S + n });
      steps.push({ op: 'done', closeSock: true });
      await runSteps(tracee, opts.restorer, opts.sock, S, steps);
      // Work a process does itself with its own descriptor numbers.
      await addWatches(tracee, scratch.addr, epollAdds(p, byId, watched));
    }
    const missing = epollMissing(image.manifest.descriptions, watched);
    if (missing) throw new ImageError(`${image.dir} cannot be restored: ${missing}`);
  } catch (e) {
    if (e instanceof TraceeError || e instanceof ImageError) throw e;
    throw new TraceeError(`restoring descriptors: ${(e as Error).message}`);
  } finally {
    closeAll(later);
    closeSync(opts.sock);
  }
}

function setStatusFlags(fd: number, want: number, kind: string): void {
  const have = sysOk('F_GETFL', SYS.fcntl, fd, F_GETFL, 0);
  if (((have ^ want) & SETTABLE) === 0) return;
  const r = sys(SYS.fcntl, fd, F_SETFL, (have & ~SETTABLE) | (want & SETTABLE));
  if (r < 0n) throw new ImageError(`cannot set the status flags 0o${(want & SETTABLE).toString(8)} of a ${kind} description (errno ${-r})`);
}

