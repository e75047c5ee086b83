import { sameAction, type Action, type ArchPlan, type Rule } from '../plan/action.js';

/** What decides the calls in one range: a fixed action, or one syscall's argument rules. */
export type RangeDecision =
  | { kind: 'action'; action: Action }
  | { kind: 'rules'; nr: number; rules: Rule[]; fallback: Action };

/** Syscall numbers [start, end) that share one decision. */
export interface NrRange {
  start: number;
  end: number;
  decision: RangeDecision;
}

/**
 * Split [0, limit) into the fewest ranges of consecutive numbers with the same
 * decision. Unlisted numbers take the arch's default action; a syscall with
 * argument rules always gets a range of its own.
 */
export function nrRanges(plan: ArchPlan, limit: number): NrRange[] {
  const ranges: NrRange[] = [];
  const add = (start: number, end: number, decision: RangeDecision): void => {
    const prev = ranges[ranges.length - 1];
    if (prev && decision.kind === 'action' && prev.decision.kind === 'action' && sameAction(prev.decision.action, decision.action)) {
      prev.end = end;
    } else {
      ranges.push({ start, end, decision });
    }
  };
  let next = 0;
  for (const d of sortedDecisions(plan, limit)) {
    if (d.nr > next) add(next, d.nr, { kind: 'action', action: plan.defaultAction });
    const { rules, fallback } = simplifyRules(d.rules, d.fallback);
    add(d.nr, d.nr + 1, rules.length === 0 ? { kind: 'action', action: fallback } : { kind: 'rules', nr: d.nr, rules, fallback });
    next = d.nr + 1;
  }
  if (next < limit) add(next, limit, { kind: 'action', action: plan.defaultAction });
  return ranges;
}

/**
 * Drop rules that cannot change the outcome: everything after a rule with no
 * conditions (it always matches, so it becomes the fallback), then trailing
 * rules whose action is the fallback anyway.
 */
export function simplifyRules(rules: readonly Rule[], fallback: Action): { rules: Rule[]; fallback: Action } {
  const kept: Rule[] = [];
  for (const r of rules) {
    if (r.conditions.length === 0) {
      fallback = r.action;
      break;
    }
    kept.push(r);
  }
  while (kept.length > 0 && sameAction(kept[kept.length - 1]!.action, fallback)) kept.pop();
  return { rules: kept, fallback };
}

function sortedDecisions(plan: ArchPlan, limit: number) {
  const sorted = [...plan.syscalls].sort((a, b) => a.nr - b.nr);
  sorted.forEach((d, i) => {
    if (!Number.isInteger(d.nr) || d.nr < 0 || d.nr >= limit) {
      throw new Error(`${plan.arch}: syscall ${d.name} has number ${d.nr}, outside 0..${limit - 1}`);
    }
    const prev = sorted[i - 1];
    if (prev && prev.nr === d.nr) throw new Error(`${plan.arch}: syscalls ${prev.name} and ${d.name} both have number ${d.nr}`);
  });
  return sorted;
}
