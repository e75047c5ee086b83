/**
 * The i386 multiplexers: socketcall(call, args) and ipc(call, ...) reach the
 * socket and System V IPC calls by a call number in their first argument. A
 * policy that names `socket` (or `shmget`, …) must hold on that path too, as
 * libseccomp makes it hold for runc: each policy entry for a multiplexed call
 * becomes a rule on the multiplexer that matches the call number.
 *
 * The multiplexed call's own arguments sit in memory (socketcall) or in other
 * registers than the direct call's, so the entry's argument conditions cannot
 * be compared there. An entry with conditions is carried to the multiplexer
 * only when its action is at least as restrictive as what the multiplexed call
 * would get anyway; otherwise the call number falls through to the rest of the
 * policy, which never lets through more than the policy's own fallback.
 */
import type { Action, ArgCondition } from './action.js';

/** i386 syscall names of the two multiplexers. */
export const SOCKETCALL = 'socketcall';
export const IPC = 'ipc';

/** linux/net.h SYS_* call numbers of socketcall(2). */
const SOCKET_CALLS: Readonly<Record<string, number>> = {
  socket: 1, bind: 2, connect: 3, listen: 4, accept: 5, getsockname: 6, getpeername: 7, socketpair: 8,
  send: 9, recv: 10, sendto: 11, recvfrom: 12, shutdown: 13, setsockopt: 14, getsockopt: 15, sendmsg: 16,
  recvmsg: 17, accept4: 18, recvmmsg: 19, sendmmsg: 20,
};

/** linux/ipc.h call numbers of ipc(2). */
const IPC_CALLS: Readonly<Record<string, number>> = {
  semop: 1, semget: 2, semctl: 3, semtimedop: 4, msgsnd: 11, msgrcv: 12, msgget: 13, msgctl: 14,
  shmat: 21, shmdt: 22, shmget: 23, shmctl: 24,
};

export interface Multiplexed {
  /** The multiplexer's i386 name. */
  via: typeof SOCKETCALL | typeof IPC;
  /** The call number in its first argument. */
  call: number;
}

/** Which multiplexer reaches syscall `name` on i386, if any. */
export function multiplexedBy(name: string): Multiplexed | undefined {
  const s = SOCKET_CALLS[name];
  if (s !== undefined) return { via: SOCKETCALL, call: s };
  const i = IPC_CALLS[name];
  if (i !== undefined) return { via: IPC, call: i };
  return undefined;
}

/** Names the multiplexer `via` reaches. */
export function multiplexedNames(via: string): string[] {
  if (via === SOCKETCALL) return Object.keys(SOCKET_CALLS);
  if (via === IPC) return Object.keys(IPC_CALLS);
  return [];
}

/**
 * The condition "the multiplexer's first argument selects `call`", as the
 * kernel reads it: socketcall takes a 32-bit int; ipc takes only the low 16
 * bits as the call (the high 16 are a version most calls ignore), so a plain
 * equality could be dodged by setting version bits.
 */
export function selects(m: Multiplexed): ArgCondition {
  return { index: 0, op: 'masked_eq', mask: m.via === IPC ? 0xffffn : 0xffffffffn, value: BigInt(m.call) };
}

/** How restrictive an action is: higher stops more. Used only to decide whether a condition may be dropped. */
export function restrictiveness(a: Action): number {
  switch (a.kind) {
    case 'allow':
    case 'log':
      return 0;
    case 'notify':
      // A notify either runs the call (continue) or answers it; treat it as running it.
      return 'shim' in a || a.answer.kind === 'continue' ? 0 : 2;
    case 'trace':
      return 1;
    case 'errno':
    case 'trap':
      return 2;
    case 'kill':
      return a.scope === 'process' ? 4 : 3;
  }
}
