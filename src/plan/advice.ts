import type { SyscallTable } from '../syscalls/table.js';
import { type Action, type ArchName, type ArchPlan, type ArgCondition, NOTIFY_AND_RUN, type Plan, type Rule, type SyscallDecision } from './action.js';

/*
 * A checkpoint reads the jail's memory advice (the VmFlags of
 * /proc/PID/smaps) before its freeze, and need not read it again while the
 * jail is stopped (the kernel walks every page table to write smaps) if the
 * supervisor saw no call since that changes advice (native/advicewatch.h).
 * That is exact only while every such call that would run unseen is
 * notified instead, and the kernel then runs it as made (CONTINUE): the
 * calls below, with the arguments that make them change advice. Where a
 * plan lets one run unseen anyway (a policy's SCMP_ACT_LOG or TRACE), the
 * checkpoint reads the advice while the jail is stopped, as before.
 */

/** MADV_DONTFORK (10) to MADV_KEEPONFORK (19): the advice values that set or clear a VmFlag. */
const adviceIn = (index: 2 | 3): ArgCondition[] => [
  { index, op: 'ge', value: 10n },
  { index, op: 'le', value: 19n },
];
const MAP_LOCKED: ArgCondition[] = [{ index: 3, op: 'masked_eq', value: 0x2000n, mask: 0x2000n }];

/** Each call that may change advice, with the conditions under which it does ([]: always). */
const BOTH_ARCHES: [string, ArgCondition[]][] = [
  ['madvise', adviceIn(2)],
  ['process_madvise', adviceIn(3)],
  ['mlock', []],
  ['munlock', []],
  ['mlockall', []],
  ['munlockall', []],
  ['mlock2', []],
  // A ring's IORING_OP_MADVISE changes advice with no syscall: the supervisor stops trusting early reads.
  ['io_uring_setup', []],
];
const ADVICE_CALLS: Record<ArchName, ReadonlyMap<string, ArgCondition[]>> = {
  x86_64: new Map([...BOTH_ARCHES, ['mmap', MAP_LOCKED]]),
  // i386's old mmap (nr 90, named mmap there) takes its arguments in memory, which a filter cannot read.
  i386: new Map([...BOTH_ARCHES, ['mmap2', MAP_LOCKED], ['mmap', []]]),
};

const runsUnseen = (a: Action): boolean => a.kind === 'log' || a.kind === 'trace';

/** The watch rule put before an allowing rule (or the fallback) whose own conditions are `base`. */
const watchRule = (base: ArgCondition[], when: ArgCondition[]): Rule => ({ conditions: [...base, ...when], action: NOTIFY_AND_RUN });

/**
 * The decision with each path that allows the call with advice-changing
 * arguments notified instead: a watch rule before every allowing rule (its
 * conditions and the watch's), and before an allowing fallback.
 */
function watched(d: SyscallDecision, when: ArgCondition[]): SyscallDecision {
  if (when.length === 0) {
    const run = (a: Action): Action => (a.kind === 'allow' ? NOTIFY_AND_RUN : a);
    return { ...d, rules: d.rules.map((r) => ({ ...r, action: run(r.action) })), fallback: run(d.fallback) };
  }
  const rules: Rule[] = [];
  for (const r of d.rules) {
    if (r.action.kind === 'allow') rules.push(watchRule(r.conditions, when));
    rules.push(r);
  }
  if (d.fallback.kind === 'allow') rules.push(watchRule([], when));
  return { ...d, rules };
}

/** The arches with every call that changes memory advice notified where it would run unseen. */
export function noteAdviceCalls(arches: ArchPlan[], tables: Record<ArchName, SyscallTable>): ArchPlan[] {
  return arches.map((a) => {
    const calls = ADVICE_CALLS[a.arch];
    const syscalls = a.syscalls.map((d) => {
      const when = calls.get(d.name);
      return when ? watched(d, when) : d;
    });
    // A call the plan does not list takes the default action: listed now if that allows it.
    if (a.defaultAction.kind === 'allow') {
      for (const [name, when] of calls) {
        const info = tables[a.arch].byName(name);
        if (!info || syscalls.some((d) => d.name === name)) continue;
        syscalls.push(watched({ nr: info.nr, name, rules: [], fallback: a.defaultAction }, when));
      }
    }
    return { ...a, syscalls: syscalls.sort((x, y) => x.nr - y.nr) };
  });
}

const sameConditions = (x: ArgCondition[], y: ArgCondition[]): boolean =>
  x.length === y.length && x.every((c, i) => c.index === y[i]!.index && c.op === y[i]!.op && c.value === y[i]!.value && c.mask === y[i]!.mask);

const isWatchRule = (r: Rule | undefined, base: ArgCondition[], when: ArgCondition[]): boolean =>
  r !== undefined && r.action.kind === 'notify' && 'answer' in r.action && r.action.answer.kind === 'continue' && sameConditions(r.conditions, [...base, ...when]);

function decisionSeen(d: SyscallDecision, when: ArgCondition[]): boolean {
  if (runsUnseen(d.fallback) || d.rules.some((r) => runsUnseen(r.action))) return false;
  if (when.length === 0) return d.fallback.kind !== 'allow' && d.rules.every((r) => r.action.kind !== 'allow');
  const ruleOk = d.rules.every((r, i) => r.action.kind !== 'allow' || isWatchRule(d.rules[i - 1], r.conditions, when));
  return ruleOk && (d.fallback.kind !== 'allow' || isWatchRule(d.rules.at(-1), [], when));
}

/**
 * Whether the supervisor sees, before it runs, every call of this plan that
 * changes memory advice, on every architecture: then it keeps the watch
 * that lets a checkpoint trust advice read before its freeze.
 */
export function adviceWatched(plan: Plan): boolean {
  for (const a of plan.arches) {
    for (const [name, when] of ADVICE_CALLS[a.arch]) {
      const d = a.syscalls.find((s) => s.name === name);
      if (d ? !decisionSeen(d, when) : a.defaultAction.kind === 'allow' || runsUnseen(a.defaultAction)) return false;
    }
  }
  return true;
}
