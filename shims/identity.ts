import { readFileSync, readlinkSync } from 'node:fs';
import { native } from '../src/native.js';

/*
 * Whose rights a file operation made for a caller runs with. The
 * supervisor's main thread can wear a caller's identity (fs ids, groups,
 * effective capabilities, umask) for a synchronous span: native/shimcalls.c.
 */

/** What /proc/TID/status says about the caller that decides how a file may be opened for it. */
export interface CallerState {
  /** Whose permissions an open runs with: the effective and fs ids, the supplementary groups and the effective capabilities. */
  euid: number;
  egid: number;
  fsuid: number;
  fsgid: number;
  groups: number[];
  capEff: bigint;
  umask: number;
  /** Thread group and thread id in the caller's own PID namespace (for /proc/self). */
  nsTgid: string;
  nsTid: string;
}

/** The user namespace a task is in (the link's text names it). */
const userNs = (pid: number | 'self'): string => readlinkSync(`/proc/${pid}/ns/user`);

let ownUserNs: string | undefined;

/**
 * What the caller may do, as our namespace sees it. Its capabilities count
 * in its own user namespace: a caller that made one (root there, every
 * capability) holds none in ours, so they are dropped. (The kernel would
 * still let such a root override permissions on files whose owner is
 * mapped into its namespace: those opens are refused here, never widened.)
 */
export function callerState(pid: number | 'self'): CallerState {
  const status = readFileSync(`/proc/${pid}/status`, 'latin1');
  ownUserNs ??= userNs('self');
  const foreign = pid !== 'self' && userNs(pid) !== ownUserNs;
  const fields = new Map<string, string>();
  for (const l of status.split('\n')) {
    const colon = l.indexOf(':');
    if (colon > 0) fields.set(l.slice(0, colon), l.slice(colon + 1).trim());
  }
  const words = (key: string): string[] => (fields.get(key) ?? '').split(/\s+/).filter(Boolean);
  const last = (key: string): string => words(key).pop() ?? '';
  return {
    euid: Number(words('Uid')[1]),
    egid: Number(words('Gid')[1]),
    fsuid: Number(words('Uid')[3]),
    fsgid: Number(words('Gid')[3]),
    groups: words('Groups').map(Number),
    capEff: foreign ? 0n : BigInt(`0x${fields.get('CapEff') ?? '0'}`),
    umask: parseInt(fields.get('Umask') || '22', 8),
    nsTgid: last('NStgid') || (fields.get('Tgid') ?? ''),
    nsTid: last('NSpid') || (fields.get('Pid') ?? ''),
  };
}

export const sameIdentity = (a: CallerState, b: CallerState): boolean =>
  a.euid === b.euid && a.egid === b.egid && a.fsuid === b.fsuid && a.fsgid === b.fsgid && a.capEff === b.capEff && a.groups.join() === b.groups.join();

let own: CallerState | undefined;

/** vjail's own identity (read once: the supervisor does not change it). */
export function ownIdentity(): CallerState {
  own ??= callerState('self');
  return own;
}

interface IdentityNative {
  shimIdentityEnter(euid: number, egid: number, fsuid: number, fsgid: number, groups: number[], capEff: bigint, umask: number): number;
  shimIdentityLeave(): void;
}

/** The native half (native/shimcalls.c). */
export function identityNative(): IdentityNative {
  return native() as unknown as IdentityNative;
}

/**
 * Run `fn` synchronously wearing the identity of caller thread `pid` (as
 * /proc/PID/status tells it now); 'cannot' when vjail cannot take it (it
 * lacks a capability the caller has). Nothing else runs on this thread
 * meanwhile, so nothing else is done with the caller's rights.
 */
export function asCaller<T>(pid: number, fn: () => T): T | 'cannot' {
  const st = callerState(pid);
  const nat = identityNative();
  if (nat.shimIdentityEnter(st.euid, st.egid, st.fsuid, st.fsgid, st.groups, st.capEff, st.umask)) return 'cannot';
  try {
    return fn();
  } finally {
    nat.shimIdentityLeave();
  }
}
