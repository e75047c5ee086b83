import type { Command } from 'commander';
import { shimForSyscall } from '../../shims/index.js';
import { compile } from '../bpf/compile.js';
import { disassemble } from '../bpf/disasm.js';
import { type Action, type ArchPlan, describeAction, type Plan } from '../plan/action.js';
import { describeHost, type HostInfo } from '../plan/host.js';
import { derivePlan, diffProfiles } from '../plan/plan.js';
import { probeHostSyscalls } from '../probe.js';
import { listProfiles, loadProfile } from '../profile/load.js';
import type { Profile } from '../profile/types.js';

/** One line per action: the action, then the syscalls that get it (argument rules noted). */
export function planLines(plan: Plan): string[] {
  const out: string[] = [];
  for (const ap of plan.arches) {
    out.push(`${ap.arch}:`);
    const groups = new Map<string, string[]>();
    for (const d of ap.syscalls) {
      const key = describeAction(d.fallback);
      const label = d.rules.length > 0 ? `${d.name}(+${d.rules.length} rule${d.rules.length > 1 ? 's' : ''}: ${d.rules.map((r) => describeAction(r.action)).join(', ')})` : d.name;
      groups.set(key, [...(groups.get(key) ?? []), label]);
    }
    for (const [action, names] of [...groups].sort((a, b) => a[1].length - b[1].length)) {
      out.push(`  ${action} (${names.length}): ${names.join(' ')}`);
    }
    out.push(`  other numbers: ${describeAction(ap.defaultAction)}`);
  }
  out.push(`foreign architectures: ${describeAction(plan.foreignArch)}`);
  out.push(`x32: ${describeAction(plan.x32)}`);
  return out;
}

function host(): HostInfo {
  return describeHost(probeHostSyscalls);
}

/** How a plan answers syscall `name` on x86_64 (else i386), in words. */
function bridge(plan: Plan, name: string): string {
  const find = (ap: ArchPlan) => ap.syscalls.find((d) => d.name === name);
  const d = plan.arches.map(find).find((x) => x !== undefined);
  if (!d) return 'not in the tables';
  return explain(d.fallback);
}

function explain(a: Action): string {
  switch (a.kind) {
    case 'allow':
      return 'the host kernel runs it';
    case 'errno':
      return a.errno === 38 ? 'ENOSYS (absent in this profile, or the host lacks it and no shim answers)' : `errno ${a.errno}`;
    case 'notify':
      return 'shim' in a ? `emulated by shim ${a.shim}` : `answered natively (${a.answer.kind})`;
    default:
      return describeAction(a);
  }
}

/** `vjail profiles diff A B`: what changes from A to B and how vjail bridges it on this host. */
export function diffLines(a: Profile, b: Profile, h: HostInfo): string[] {
  const diff = diffProfiles(a, b);
  const planA = derivePlan(a, h).plan;
  const planB = derivePlan(b, h).plan;
  const out: string[] = [`${a.name} (kernel ${a.kernel}) -> ${b.name} (kernel ${b.kernel}), on host ${h.release}`];
  out.push(`added in ${b.name} (${diff.added.length}):`);
  for (const n of diff.added) out.push(`  + ${n}: under ${b.name}, ${bridge(planB, n)}`);
  out.push(`removed in ${b.name} (${diff.removed.length}):`);
  for (const n of diff.removed) out.push(`  - ${n}: under ${a.name}, ${bridge(planA, n)}; under ${b.name}, ENOSYS`);
  out.push(`uname changes (${diff.unameChanged.length}):`);
  for (const c of diff.unameChanged) {
    out.push(`  ${c.field}: ${JSON.stringify(c.from ?? '(host)')} -> ${JSON.stringify(c.to ?? '(host)')}`);
  }
  return out;
}

/** Shims a plan uses (by name), with the syscalls they answer there. */
export function activeEmulations(plan: Plan): Map<string, string[]> {
  const used = new Map<string, Set<string>>();
  for (const ap of plan.arches) {
    for (const d of ap.syscalls) {
      for (const a of [d.fallback, ...d.rules.map((r) => r.action)]) {
        if (a.kind !== 'notify') continue;
        const shim = 'shim' in a ? a.shim : shimForSyscall(d.name)?.name;
        if (!shim) continue;
        used.set(shim, (used.get(shim) ?? new Set()).add(`${ap.arch === 'i386' ? 'i386:' : ''}${d.name}`));
      }
    }
  }
  return new Map([...used].sort((x, y) => x[0].localeCompare(y[0])).map(([k, v]) => [k, [...v].sort()]));
}

/** A plan as JSON-ready data: actions in words, argument values as decimal strings (they are 64-bit). */
export function planJson(plan: Plan): unknown {
  return {
    arches: plan.arches.map((ap) => ({
      arch: ap.arch,
      syscalls: ap.syscalls.map((d) => ({
        nr: d.nr,
        name: d.name,
        action: describeAction(d.fallback),
        ...(d.rules.length > 0 && {
          rules: d.rules.map((r) => ({
            conditions: r.conditions.map((c) => ({ index: c.index, op: c.op, value: String(c.value), ...(c.mask !== undefined && { mask: String(c.mask) }) })),
            action: describeAction(r.action),
          })),
        }),
      })),
      otherNumbers: describeAction(ap.defaultAction),
    })),
    foreignArchitectures: describeAction(plan.foreignArch),
    x32: describeAction(plan.x32),
  };
}

/** `vjail profiles diff A B --json`. */
export function diffJson(a: Profile, b: Profile, h: HostInfo): unknown {
  const diff = diffProfiles(a, b);
  const planA = derivePlan(a, h).plan;
  const planB = derivePlan(b, h).plan;
  return {
    from: { name: a.name, kernel: a.kernel },
    to: { name: b.name, kernel: b.kernel },
    host: h.release,
    added: diff.added.map((n) => ({ name: n, under: { [b.name]: bridge(planB, n) } })),
    removed: diff.removed.map((n) => ({ name: n, under: { [a.name]: bridge(planA, n), [b.name]: 'ENOSYS' } })),
    unameChanged: diff.unameChanged.map((c) => ({ field: c.field, from: c.from ?? null, to: c.to ?? null })),
  };
}

function writeJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

function write(lines: string[]): void {
  process.stdout.write(`${lines.join('\n')}\n`);
}

export function registerProfilesCommands(cli: Command, setExit: (code: number) => void): void {
  const profiles = cli.command('profiles').description('list, show and compare kernel-ABI profiles');
  profiles
    .command('list')
    .description('list the available profiles')
    .option('--json', 'print a JSON array')
    .action((flags: { json?: boolean }) => {
      const all = listProfiles();
      if (flags.json) {
        writeJson(all.map((p) => ({ name: p.name, kernel: p.kernel, release: p.uname.release, host: p.isHost, description: p.description })));
        return setExit(0);
      }
      const width = Math.max(...all.map((p) => p.name.length));
      write(all.map((p) => `${p.name.padEnd(width)}  ${p.isHost ? `host (${p.uname.release})` : p.uname.release}  ${p.description}`));
      setExit(0);
    });
  profiles
    .command('show')
    .description("show a profile's plan on this host: per syscall its action, grouped")
    .argument('<name>', 'profile name or file')
    .option('--bpf', 'print the compiled seccomp filter instead')
    .option('--json', 'print the profile and its plan as one JSON object')
    .action((name: string, flags: { bpf?: boolean; json?: boolean }) => {
      const profile = loadProfile(name);
      const { plan, warnings } = derivePlan(profile, host());
      if (flags.json) {
        const { name: n, description, kernel, uname } = profile;
        writeJson({ name: n, description, kernel, uname, plan: planJson(plan), warnings });
      } else if (flags.bpf) {
        write(disassemble(compile(plan)));
      } else {
        const u = profile.uname;
        write([
          `profile ${profile.name}: ${profile.description}`,
          `kernel ${profile.kernel}; uname: ${u.sysname} ${u.nodename ?? '(host name)'} ${u.release} ${u.version} ${u.machine} ${u.domainname}`,
          ...planLines(plan),
          ...warnings.map((w) => `warning: ${w}`),
        ]);
      }
      setExit(0);
    });
  profiles
    .command('diff')
    .description('syscalls added and removed from profile A to B, uname changes, and how vjail bridges each on this host')
    .argument('<a>', 'profile name or file')
    .argument('<b>', 'profile name or file')
    .option('--json', 'print the differences as one JSON object')
    .action((a: string, b: string, flags: { json?: boolean }) => {
      if (flags.json) writeJson(diffJson(loadProfile(a), loadProfile(b), host()));
      else write(diffLines(loadProfile(a), loadProfile(b), host()));
      setExit(0);
    });
}
