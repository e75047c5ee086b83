/**
 * epoll: its interest list, from fdinfo's `tfd:` lines (target fd number,
 * events with EPOLLET/ONESHOT/WAKEUP/EXCLUSIVE as the kernel keeps them — a
 * one-shot watch that fired keeps only those flags, and comes back disarmed
 * — and data). A watch names its target by a descriptor number of the
 * process that added it; kcmp(KCMP_EPOLL_TFD) finds a holder of the epoll
 * whose descriptor of that number is still on the watched file. A watch no
 * holder can name so is refused. Events ready at the checkpoint are not
 * saved as such: the kernel finds them again from the targets' state when
 * the watches are added (an edge-triggered watch may so report one edge
 * again).
 *
 * Restore makes an empty epoll here; its watches are added by each process
 * holding it, after its descriptors are placed (`epollAdds`), with epoll_ctl
 * injected into the process: its own descriptor numbers are what count.
 */
import { type Description, type LiveProcess, toHex, fromHex } from '../../../image/format.js';
import { sys, sysOk } from '../../../native/fdio.js';
import { SYS } from '../../syscalls.js';
import type { Tracee } from '../../tracee.js';
import { type FdKind, O_CLOEXEC, Unsaveable } from './kind.js';

const KCMP_EPOLL_TFD = 7;
const EPOLL_CTL_ADD = 1;
const TFD = /^tfd:\s*(\d+)\s+events:\s*([0-9a-f]+)\s+data:\s*([0-9a-f]+)/gm;

/** Is descriptor `tfd` of `pid` the file its epoll at `epfd` watches as `tfd`? */
function watchesOwnFd(pid: number, epfd: number, tfd: number): boolean {
  const slot = Buffer.alloc(12);
  slot.writeUInt32LE(epfd, 0);
  slot.writeUInt32LE(tfd, 4);
  return sys(SYS.kcmp, pid, pid, KCMP_EPOLL_TFD, tfd, slot) === 0n;
}

export const epollKind: FdKind<'epoll'> = {
  kind: 'epoll',
  doc: { what: 'epoll', how: 'interest list (fd, events, data), nested epoll; re-added by the holding process; a watch no holder names any more is refused' },
  match: (p) => p.link === 'anon_inode:[eventpoll]',
  collect(p, ctx) {
    const self = ctx.descriptionOf(p.pid, p.fd);
    const holders = ctx.all.filter((h) => h.link === p.link && ctx.descriptionOf(h.pid, h.fd) === self);
    const watches = [];
    for (const m of p.info.matchAll(TFD)) {
      const fd = Number(m[1]);
      const holder = holders.find((h) => watchesOwnFd(h.pid, h.fd, fd));
      const target = holder && ctx.descriptionOf(holder.pid, fd);
      if (target === undefined) {
        return new Unsaveable(`an epoll watching descriptor ${fd}, which no process holding the epoll has open on the watched file any more`, p.link);
      }
      watches.push({ fd, target, events: parseInt(m[2]!, 16), data: toHex(BigInt(`0x${m[3]}`)) });
    }
    return { watches: watches.sort((a, b) => a.fd - b.fd) };
  },
  create: () => ({ fd: sysOk('epoll_create1', SYS.epoll_create1, O_CLOEXEC) }),
};

/** One epoll_ctl(ADD) to make in a process: its epoll at `epfd`, the target at `fd`. */
export interface EpollAdd {
  epfd: number;
  fd: number;
  events: number;
  data: bigint;
}

/**
 * The watches process `p` adds: those of the epolls it holds whose target it
 * holds at the watch's number, and that no process before it added (`added`:
 * "description:index", shared across processes).
 */
export function epollAdds(p: LiveProcess, byId: Map<number, Description>, added: Set<string>): EpollAdd[] {
  const at = new Map(p.fds.map((f) => [f.fd, f.description]));
  const out: EpollAdd[] = [];
  for (const f of p.fds) {
    const d = byId.get(f.description);
    if (d?.kind !== 'epoll') continue;
    d.watches.forEach((w, i) => {
      const key = `${d.id}:${i}`;
      if (added.has(key) || at.get(w.fd) !== w.target) return;
      added.add(key);
      out.push({ epfd: f.fd, fd: w.fd, events: w.events, data: fromHex(w.data) });
    });
  }
  return out;
}

/** Every watch of the image's epolls was added by some process, else why not. */
export function epollMissing(descriptions: Description[], added: Set<string>): string | undefined {
  for (const d of descriptions) {
    if (d.kind !== 'epoll') continue;
    const i = d.watches.findIndex((_, n) => !added.has(`${d.id}:${n}`));
    if (i >= 0) return `epoll (description ${d.id}) watches descriptor ${d.watches[i]!.fd}, which no process holding it has on the watched description`;
  }
  return undefined;
}

/** Make the adds in `t` (its descriptors placed), through the scratch page at `addr`. */
export async function addWatches(t: Tracee, addr: bigint, adds: EpollAdd[]): Promise<void> {
  for (const a of adds) {
    const ev = Buffer.alloc(12); // struct epoll_event is packed on x86-64
    ev.writeUInt32LE(a.events >>> 0, 0);
    ev.writeBigUInt64LE(a.data, 4);
    t.write(addr, ev);
    await t.syscallOk(`epoll_ctl(${a.epfd}, EPOLL_CTL_ADD, ${a.fd})`, SYS.epoll_ctl, a.epfd, EPOLL_CTL_ADD, a.fd, addr);
  }
}
