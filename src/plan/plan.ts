import { shimForSyscall } from '../../shims/index.js';
import type { Shim } from '../../shims/types.js';
import type { Policy, PolicyEntry } from '../policy/types.js';
import { ENOSYS, ProfileError } from '../profile/schema.js';
import type { Profile, UnameFields } from '../profile/types.js';
import type { SyscallInfo } from '../syscalls/table.js';
import { compareKernelVersions } from '../syscalls/version.js';
import { type Action, ALLOW, type ArchName, type ArchPlan, errno, KILL_PROCESS, type Plan, type Rule, type SyscallDecision } from './action.js';
import { defaultTables, existsIn, type HostInfo, type PlanTables, shimmedSyscalls } from './host.js';
import { noteAdviceCalls } from './advice.js';
import { noteIdentityCalls } from './identity.js';
import { opsBeyond, policyDeniedRingWork, RING_SYSCALLS } from './io-uring.js';
import { IPC, multiplexedBy, multiplexedNames, restrictiveness, SOCKETCALL, selects } from './multiplex.js';

/**
 * prctl option ('vjai') of the launch handshake. The launcher calls
 * prctl(HANDSHAKE_PRCTL_OPTION) after installing the filter; the supervisor
 * answers 0. Once that returns, the supervisor holds the listener, so the
 * workload cannot exec before anything it does is supervised.
 */
export const HANDSHAKE_PRCTL_OPTION = 0x766a6169;

export interface PlanOptions {
  /** The OCI seccomp policy to honour; none allows everything the profile allows. */
  policy?: Policy;
  /** Syscalls to hand to their shim even where the host kernel has them. */
  emulate?: string[];
  /**
   * The jail's /proc kernel files already present the profile (mounted over
   * the real ones), so shims that exist only to present them through open()
   * are not needed.
   */
  kernelFilesMounted?: boolean;
}

export interface PlanResult {
  plan: Plan;
  /** One line each: where the plan cannot present the profile faithfully, or input had no effect. */
  warnings: string[];
}

const EPERM = 1;

/** The architectures vjail plans, in plan order. */
const ARCHES: readonly ArchName[] = ['x86_64', 'i386'];

/** Syscalls `--emulate` accepts: those some shim answers. */
export function emulatableSyscalls(): string[] {
  return shimmedSyscalls();
}

/** Is syscall `info` part of `profile` (its kernel's set, adjusted by overrides)? */
function inProfile(profile: Profile, info: SyscallInfo, passThroughHost: boolean): boolean {
  if (profile.overrides.remove.includes(info.name)) return false;
  if (profile.overrides.add.includes(info.name)) return true;
  // The host profile presents whatever the running kernel has.
  if (profile.isHost && passThroughHost) return true;
  return existsIn(info, profile.kernel);
}

/** Does a jail under `profile` have x86_64 syscall `name` (before any shim)? */
export function profileHas(profile: Profile, name: string, tables: PlanTables = defaultTables()): boolean {
  const info = tables.x86_64.byName(name);
  return info !== undefined && inProfile(profile, info, false);
}

/** How the supervisor answers through `shim`: natively when the answer is known now. */
function viaShim(shim: Shim, name: string, profile: Profile): Action {
  const answer = shim.fixedAnswer?.(name, profile);
  return answer ? { kind: 'notify', answer } : { kind: 'notify', shim: shim.name };
}

/** The policy's action over the profile's: the profile decides only where the policy lets the call run. */
function compose(policy: Action, profile: Action): Action {
  if (policy.kind === 'allow') return profile;
  // SECCOMP_RET_LOG runs the call; where the profile would not, the profile's answer is what that kernel would give.
  if (policy.kind === 'log') return profile.kind === 'allow' ? policy : profile;
  return policy;
}

function handshakeRule(): Rule {
  return {
    conditions: [{ index: 0, op: 'eq', value: BigInt(HANDSHAKE_PRCTL_OPTION) }],
    action: { kind: 'notify', answer: { kind: 'value', value: 0n } },
  };
}

interface Context {
  profile: Profile;
  host: HostInfo;
  emulate: ReadonlySet<string>;
  kernelFilesMounted: boolean;
  policy?: Policy;
  /** Policy entries by syscall name, in policy order. */
  entries: ReadonlyMap<string, PolicyEntry[]>;
  /** The answer to the io_uring syscalls where a ring could do what the jail may not (see io-uring.ts). */
  ringRefusal?: Action;
}

/** What the profile alone does with one syscall; pushes the name to `unserved` when only ENOSYS is left. */
function profileAction(ctx: Context, arch: ArchName, info: SyscallInfo, unserved: string[]): Action {
  const { profile, host } = ctx;
  const name = info.name;
  if (!inProfile(profile, info, true)) return errno(ENOSYS);
  const shim = shimForSyscall(name);
  if (shim && ctx.emulate.has(name)) return viaShim(shim, name, profile);
  if (profile.isHost) return ALLOW;
  // A shim whose answer this profile fixes in advance (uname) presents the profile, whatever the host has.
  const fixed = shim?.fixedAnswer?.(name, profile);
  if (fixed) return { kind: 'notify', answer: fixed };
  // A shim that presents the profile where the kernel would show the host (open of /proc/version).
  if (!ctx.kernelFilesMounted && shim?.presentsProfile?.(name, profile)) return viaShim(shim, name, profile);
  if (host.hasSyscall(arch, name)) return ALLOW;
  if (shim && !shim.onlyWhenForced) return viaShim(shim, name, profile);
  unserved.push(name);
  return errno(ENOSYS);
}

/**
 * The policy entries deciding i386 `socketcall` or `ipc`: its own, and those
 * of the calls it multiplexes turned into rules on its call number (see
 * multiplex.ts), in policy order. An unconditional entry of its own decides
 * every call alone, as libseccomp lets a catch-all rule override.
 */
function multiplexerEntries(ctx: Context, name: string, approximated: Set<string>): PolicyEntry[] {
  const own = ctx.entries.get(name) ?? [];
  if (own.some((e) => e.conditions.length === 0)) return own;
  const order = new Map((ctx.policy?.entries ?? []).map((e, i) => [e, i]));
  const derived: { at: number; entry: PolicyEntry }[] = own.map((entry) => ({ at: order.get(entry) ?? -1, entry }));
  const fallback = ctx.policy?.defaultAction ?? ALLOW;
  for (const n of multiplexedNames(name)) {
    const m = multiplexedBy(n)!;
    for (const e of ctx.entries.get(n) ?? []) {
      if (e.conditions.length > 0) {
        approximated.add(n);
        // Dropping the conditions must not let through what the policy's fallback would stop.
        if (restrictiveness(e.action) <= restrictiveness(fallback)) continue;
      }
      derived.push({ at: order.get(e) ?? -1, entry: { names: [name], action: e.action, conditions: [selects(m)] } });
    }
  }
  return derived.sort((a, b) => a.at - b.at).map((d) => d.entry);
}

/** The decision for one syscall: policy rules (conditions kept) over the profile's action. */
function decide(ctx: Context, arch: ArchName, info: SyscallInfo, unserved: string[], approximated: Set<string>): SyscallDecision {
  let base = profileAction(ctx, arch, info, unserved);
  if (ctx.ringRefusal && RING_SYSCALLS.includes(info.name) && base.kind !== 'errno') base = ctx.ringRefusal;
  const rules: Rule[] = arch === 'x86_64' && info.name === 'prctl' ? [handshakeRule()] : [];
  let fallback: Action | undefined;
  const multiplexer = arch === 'i386' && (info.name === SOCKETCALL || info.name === IPC);
  const entries = multiplexer ? multiplexerEntries(ctx, info.name, approximated) : (ctx.entries.get(info.name) ?? []);
  for (const e of entries) {
    const action = compose(e.action, base);
    if (e.conditions.length === 0) {
      // An unconditional entry matches every call; entries after it are never reached.
      fallback = action;
      break;
    }
    rules.push({ conditions: e.conditions.map((c) => ({ ...c })), action });
  }
  fallback ??= compose(ctx.policy?.defaultAction ?? ALLOW, base);
  return { nr: info.nr, name: info.name, rules, fallback };
}

/** Architectures to plan: both, or those the policy admits (OCI: none listed means the native one). */
function plannedArches(policy: Policy | undefined): ArchName[] {
  if (!policy) return [...ARCHES];
  const admitted = policy.arches.length > 0 ? policy.arches : ['x86_64'];
  if (!admitted.includes('x86_64')) {
    throw new ProfileError(`policy ${policy.source} does not admit x86_64; add "SCMP_ARCH_X86_64" to its "architectures"`);
  }
  return ARCHES.filter((a) => admitted.includes(a));
}

function checkEmulate(names: readonly string[]): Set<string> {
  const ok = emulatableSyscalls();
  for (const n of names) {
    if (!ok.includes(n)) {
      throw new ProfileError(`cannot emulate ${JSON.stringify(n)}: no shim answers it; emulatable syscalls: ${ok.join(', ')}`);
    }
  }
  return new Set(names);
}

/** Names the input uses that no table knows, as warnings. */
function unknownNames(ctx: Context, tables: PlanTables): string[] {
  const viaMultiplexer = (n: string) => (ctx.policy?.arches ?? []).includes('i386') && multiplexedBy(n) !== undefined;
  const known = (n: string) => ARCHES.some((a) => tables[a].byName(n) !== undefined) || viaMultiplexer(n);
  const out: string[] = [];
  for (const n of [...ctx.profile.overrides.add, ...ctx.profile.overrides.remove]) {
    if (!known(n)) out.push(`profile ${ctx.profile.name} overrides ${JSON.stringify(n)}, which is not a syscall on x86_64 or i386; it has no effect`);
  }
  const policyNames = [...new Set([...ctx.entries.keys(), ...(ctx.policy?.unknownSyscalls ?? [])])].filter((n) => !known(n)).sort();
  if (policyNames.length > 0 && ctx.policy) {
    out.push(`policy ${ctx.policy.source} names syscalls unknown on x86_64 and i386, which have no effect: ${policyNames.join(', ')}`);
  }
  return out;
}

/**
 * Whether io_uring must be refused (see io-uring.ts), with the plan warning
 * that says why. The profile's kernel comes first: a kernel without the ring
 * leaves nothing for the policy to decide.
 */
function ringRefusal(ctx: Context, tables: PlanTables, warnings: string[]): Action | undefined {
  const { profile, host, policy } = ctx;
  if (!profile.isHost && profileHas(profile, 'io_uring_setup', tables)) {
    const beyond = opsBeyond(host.release, profile.kernel);
    if (beyond.length > 0) {
      warnings.push(
        `io_uring: the host's rings perform operations ${profile.name} did not have (${beyond.join(', ')}) and cannot be limited ` +
          `to its own; io_uring_setup answers ENOSYS, as a kernel built without io_uring does`,
      );
      return errno(ENOSYS);
    }
  }
  if (!policy) return undefined;
  const kernel = compareKernelVersions(host.release, profile.kernel) < 0 ? host.release : profile.kernel;
  const denied = policyDeniedRingWork(policy, ctx.entries, kernel);
  if (denied.length === 0) return undefined;
  warnings.push(
    `io_uring: policy ${policy.source} does not let every call run that a ring performs (${denied.join(', ')}); ` +
      `io_uring_setup, io_uring_enter and io_uring_register answer EPERM, as with io_uring disabled`,
  );
  return errno(EPERM);
}

/**
 * Derive the plan for running a workload under `profile` on `host`, with an
 * optional OCI policy. Pure: the same inputs give a deep-equal result.
 */
export function derivePlan(profile: Profile, host: HostInfo, options: PlanOptions = {}, tables: PlanTables = defaultTables()): PlanResult {
  const entries = new Map<string, PolicyEntry[]>();
  for (const e of options.policy?.entries ?? []) {
    for (const n of new Set(e.names)) {
      const list = entries.get(n);
      if (list) list.push(e);
      else entries.set(n, [e]);
    }
  }
  const ctx: Context = {
    profile,
    host,
    emulate: checkEmulate(options.emulate ?? []),
    kernelFilesMounted: options.kernelFilesMounted ?? false,
    policy: options.policy,
    entries,
  };
  const warnings = unknownNames(ctx, tables);
  ctx.ringRefusal = ringRefusal(ctx, tables, warnings);
  const arches: ArchPlan[] = [];
  for (const arch of plannedArches(options.policy)) {
    const table = tables[arch];
    if (arch === 'x86_64' && !table.byName('prctl')) throw new Error('the x86_64 syscall table has no prctl; the launch handshake needs it');
    const unserved: string[] = [];
    const approximated = new Set<string>();
    const syscalls = [...table.all].sort((a, b) => a.nr - b.nr).map((info) => decide(ctx, arch, info, unserved, approximated));
    if (approximated.size > 0 && ctx.policy) {
      warnings.push(
        `${arch}: policy ${ctx.policy.source} compares arguments of ${[...approximated].sort().join(', ')}, which the socketcall/ipc ` +
          `multiplexers pass in memory; through them such a call is decided by its call number alone (denied where the entry ` +
          `denies, else the policy's default action)`,
      );
    }
    if (unserved.length > 0) {
      warnings.push(
        `${arch}: ${profile.name} has ${unserved.length} syscall(s) the host kernel ${host.release} lacks and no shim answers; ` +
          `callers get ENOSYS: ${unserved.join(', ')}`,
      );
    }
    arches.push({ arch, syscalls, defaultAction: options.policy?.defaultAction ?? ALLOW });
  }
  for (const n of [...ctx.emulate].sort()) {
    const present = ARCHES.some((a) => {
      const info = tables[a].byName(n);
      return info !== undefined && inProfile(profile, info, true);
    });
    if (!present) warnings.push(`--emulate ${n} has no effect: ${profile.name} does not have ${n}`);
  }
  return {
    plan: {
      profile: profile.name,
      arches: noteAdviceCalls(noteIdentityCalls(arches), tables),
      foreignArch: KILL_PROCESS,
      // vjail hosts are x86_64 kernels without X32 support; a call with the x32 bit is never legitimate here.
      x32: KILL_PROCESS,
    },
    warnings,
  };
}

/** The plan alone; see derivePlan. */
export function plan(profile: Profile, host: HostInfo, options: PlanOptions = {}, tables?: PlanTables): Plan {
  return derivePlan(profile, host, options, tables).plan;
}

export interface UnameChange {
  field: keyof UnameFields;
  from: string | undefined;
  to: string | undefined;
}

export interface ProfileDiff {
  /** Syscalls `b` has and `a` lacks (on x86_64 or i386), sorted. */
  added: string[];
  /** Syscalls `a` has and `b` lacks, sorted. */
  removed: string[];
  unameChanged: UnameChange[];
}

const UNAME_FIELDS: readonly (keyof UnameFields)[] = ['sysname', 'nodename', 'release', 'version', 'machine', 'domainname'];

/** Syscall names a profile has on any planned architecture, from the tables (the host profile by its kernel version). */
function syscallNames(profile: Profile, tables: PlanTables): Set<string> {
  const out = new Set<string>();
  for (const arch of ARCHES) for (const info of tables[arch].all) if (inProfile(profile, info, false)) out.add(info.name);
  return out;
}

/** What changes going from profile `a` to profile `b`, for `vjail profiles diff`. */
export function diffProfiles(a: Profile, b: Profile, tables: PlanTables = defaultTables()): ProfileDiff {
  const sa = syscallNames(a, tables);
  const sb = syscallNames(b, tables);
  return {
    added: [...sb].filter((n) => !sa.has(n)).sort(),
    removed: [...sa].filter((n) => !sb.has(n)).sort(),
    unameChanged: UNAME_FIELDS.filter((f) => a.uname[f] !== b.uname[f]).map((field) => ({ field, from: a.uname[field], to: b.uname[field] })),
  };
}
