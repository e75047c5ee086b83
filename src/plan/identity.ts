import { type Action, type ArchPlan, NOTIFY_AND_RUN, type Plan, type SyscallDecision } from './action.js';

/*
 * The open shim's native fast path keeps each caller thread's identity (ids,
 * groups, effective capabilities, that its user namespace and root are
 * vjail's) from one open to the next instead of reading /proc/TID/status
 * each time (native/idcache.c). That is exact only while the supervisor sees
 * every call that can change what it kept, before the kernel runs it. Where
 * the open shim answers opens, each such call that would run unseen is
 * notified instead, and the kernel then runs it as made (CONTINUE).
 */

/** What a call may change of a kept identity: the answer table's track byte (enum idc_track in native/idcache.h). */
export const TRACK = { own: 1, others: 2, exec: 3 } as const;
export type Track = keyof typeof TRACK;

const OWN = [
  'setuid', 'setgid', 'setreuid', 'setregid', 'setresuid', 'setresgid', 'setfsuid', 'setfsgid', 'setgroups', 'capset', 'unshare', 'setns',
  // i386: the 32-bit id forms beside the 16-bit ones above.
  'setuid32', 'setgid32', 'setreuid32', 'setregid32', 'setresuid32', 'setresgid32', 'setfsuid32', 'setfsgid32', 'setgroups32',
];

/**
 * The calls that change a thread's credentials, user namespace or root (a
 * thread changes only its own credentials; prctl's capability options
 * change only what a later setuid or execve does, and those are here),
 * chroot and pivot_root that move other threads' roots, and execve that
 * may hand the leader's thread id to another thread. (No jail task can
 * receive these calls first through a seccomp listener of its own: the
 * kernel refuses a second listener in one filter chain, and vjail's filter
 * has one.)
 */
export const IDENTITY_CALLS: ReadonlyMap<string, Track> = new Map<string, Track>([
  ...OWN.map((n) => [n, 'own'] as const),
  ['chroot', 'others'],
  ['pivot_root', 'others'],
  ['execve', 'exec'],
  ['execveat', 'exec'],
]);

/** Does the plan send x86_64 open and openat to the open shim (and so, maybe, to the fast path)? */
export function opensViaShim(arches: readonly ArchPlan[]): boolean {
  const x86 = arches.find((a) => a.arch === 'x86_64');
  const viaShim = (name: string): boolean => {
    const d = x86?.syscalls.find((s) => s.name === name);
    return !!d && [d.fallback, ...d.rules.map((r) => r.action)].some((a) => a.kind === 'notify' && 'shim' in a && a.shim === 'open');
  };
  return viaShim('open') || viaShim('openat');
}

function noted(d: SyscallDecision): SyscallDecision {
  if (!IDENTITY_CALLS.has(d.name)) return d;
  const run = (a: Action): Action => (a.kind === 'allow' ? NOTIFY_AND_RUN : a);
  return { ...d, rules: d.rules.map((r) => ({ ...r, action: run(r.action) })), fallback: run(d.fallback) };
}

/** The arches with every identity call that would run unseen notified instead, where the open shim answers opens. */
export function noteIdentityCalls(arches: ArchPlan[]): ArchPlan[] {
  if (!opensViaShim(arches)) return arches;
  return arches.map((a) => ({ ...a, syscalls: a.syscalls.map(noted) }));
}

/** Actions after which the call does not run, or runs only once the supervisor has seen it. */
const seen = (a: Action): boolean => a.kind === 'notify' || a.kind === 'errno' || a.kind === 'kill' || a.kind === 'trap';

/**
 * Whether the supervisor sees every identity call of this plan before it
 * runs, on every architecture (a policy's SCMP_ACT_LOG or SCMP_ACT_TRACE
 * lets one run unseen: the fast path then reads each caller's status).
 */
export function identityTracked(plan: Plan): boolean {
  for (const a of plan.arches) {
    for (const d of a.syscalls) {
      if (!IDENTITY_CALLS.has(d.name)) continue;
      if (!seen(d.fallback) || d.rules.some((r) => !seen(r.action))) return false;
    }
  }
  return true;
}
