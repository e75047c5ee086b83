import type { Action, ArgCondition } from '../src/plan/action.js';
import type { OciPolicy } from '../src/policy/oci.js';
import type { Policy } from '../src/policy/types.js';

/** The action as bench/c/loadfilter.c spells it. */
function actionWord(a: Action): string {
  switch (a.kind) {
    case 'allow':
      return 'allow';
    case 'errno':
      return `errno:${a.errno}`;
    case 'kill':
      return a.scope === 'process' ? 'kill_process' : 'kill_thread';
    case 'trap':
      return 'trap';
    case 'log':
      return 'log';
    case 'trace':
      return `trace:${a.data}`;
    case 'notify':
      return 'notify';
  }
}

function condWord(c: ArgCondition): string {
  const base = `${c.index}:${c.op}:${c.value}`;
  return c.op === 'masked_eq' ? `${base}:${c.mask ?? 0n}` : base;
}

/**
 * The policy as a rules file for bench/c/loadfilter.c, which hands each rule
 * to libseccomp as runc does: same default, same architectures, one
 * seccomp_rule_add per entry and name, in file order.
 */
export function libseccompRules(policy: Policy | OciPolicy): string {
  const lines = [`# ${policy.source}`, `default ${actionWord(policy.defaultAction)}`, 'arch x86_64'];
  if (policy.arches.includes('i386')) lines.push('arch x86');
  if ('x32' in policy && policy.x32) lines.push('arch x32');
  for (const e of policy.entries) {
    const conds = e.conditions.map(condWord).join(' ');
    for (const name of e.names) lines.push(`rule ${name} ${actionWord(e.action)}${conds ? ` ${conds}` : ''}`);
  }
  return `${lines.join('\n')}\n`;
}
