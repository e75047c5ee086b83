import type { Action, ArgCondition, SyscallDecision } from '../plan/action.js';

const U64 = (1n << 64n) - 1n;

function holds(c: ArgCondition, args: readonly bigint[]): boolean {
  const arg = args[c.index] & U64;
  const value = c.value & U64;
  switch (c.op) {
    case 'eq':
      return arg === value;
    case 'ne':
      return arg !== value;
    case 'lt':
      return arg < value;
    case 'le':
      return arg <= value;
    case 'gt':
      return arg > value;
    case 'ge':
      return arg >= value;
    case 'masked_eq':
      return (arg & (c.mask ?? U64)) === value;
  }
}

/** The action a decision takes for these arguments: first rule whose conditions all hold, else the fallback. */
export function decide(d: SyscallDecision, args: readonly bigint[]): Action {
  for (const r of d.rules) if (r.conditions.every((c) => holds(c, args))) return r.action;
  return d.fallback;
}
