import { existsSync, readFileSync } from 'node:fs';
import { errnoName } from '../errno.js';
import type { Command } from 'commander';
import { describeFreezers } from '../cgroup.js';
import { probeNativeFeatures } from '../features.js';
import { native } from '../native.js';
import { describeHost } from '../plan/host.js';
import { derivePlan } from '../plan/plan.js';
import { probeHostSyscalls } from '../probe.js';
import { loadProfile } from '../profile/load.js';
import { activeEmulations } from './profiles.js';

export interface Feature {
  name: string;
  present: boolean;
  detail: string;
}


function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** cgroup freezers: where a named jail's cgroup would be made, v2 (cgroup.freeze) and v1 (freezer.state). */
function freezers(): Feature[] {
  return describeFreezers().map((f) => ({ name: `cgroup freezer ${f.kind}`, present: f.present, detail: f.detail }));
}

/** What the running kernel offers vjail. */
export function hostFeatures(): Feature[] {
  const p = probeNativeFeatures();
  const yes = (e: number, ok: string) => (e === 0 ? ok : `${errnoName(e)} from the kernel`);
  // pidfd_getfd(-1, -1, 0): EBADF where the kernel has it.
  const [getfd] = native().probeSyscalls([[438, [-1n, -1n, 0n, 0n, 0n, 0n]]]);
  return [
    { name: 'seccomp user notification', present: p.listener === 0, detail: yes(p.listener, 'SECCOMP_FILTER_FLAG_NEW_LISTENER') },
    { name: 'seccomp sync wake-up flag', present: p.syncWakeUp === 0, detail: yes(p.syncWakeUp, 'SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP') },
    { name: 'seccomp ADDFD', present: p.addfd === 0, detail: yes(p.addfd, 'SECCOMP_IOCTL_NOTIF_ADDFD') },
    { name: 'pidfd_getfd', present: getfd !== -38, detail: getfd === -38 ? 'ENOSYS' : 'syscall 438' },
    { name: 'time namespaces', present: existsSync('/proc/self/ns/time'), detail: existsSync('/proc/self/ns/time') ? '/proc/self/ns/time' : 'no /proc/self/ns/time' },
    ...freezers(),
    { name: 'soft-dirty bits', present: p.softDirty === 0, detail: p.softDirty === 0 ? 'pagemap bit 55' : 'a written page is not soft-dirty (no CONFIG_MEM_SOFT_DIRTY)' },
    { name: 'PAGEMAP_SCAN', present: p.pagemapScan === 0, detail: yes(p.pagemapScan, 'ioctl on /proc/PID/pagemap') },
  ];
}

/** What `vjail check` reports, as data (`--json` prints it as is). */
export interface CheckReport {
  host: { release: string; version: string };
  features: Feature[];
  profile: { name: string; kernel: string };
  /** Shim name -> the syscalls it answers under the profile here. */
  emulations: Record<string, string[]>;
  warnings: string[];
}

export function checkReport(profileName: string): CheckReport {
  const host = describeHost(probeHostSyscalls);
  const profile = loadProfile(profileName);
  const { plan, warnings } = derivePlan(profile, host);
  return {
    host: { release: host.release, version: host.version },
    features: hostFeatures(),
    profile: { name: profile.name, kernel: profile.kernel },
    emulations: Object.fromEntries(activeEmulations(plan)),
    warnings,
  };
}

/** The lines `vjail check` prints. */
export function checkLines(profileName: string): string[] {
  const r = checkReport(profileName);
  const out = [`host kernel: ${r.host.release} ${r.host.version}`];
  const width = Math.max(...r.features.map((f) => f.name.length));
  for (const f of r.features) out.push(`${`${f.name}:`.padEnd(width + 1)} ${f.present ? 'yes' : 'no '} (${f.detail})`);
  const active = Object.entries(r.emulations);
  out.push(`profile ${r.profile.name} (kernel ${r.profile.kernel}) on this host activates ${active.length} emulation(s):`);
  for (const [shim, calls] of active) out.push(`  ${shim}: ${calls.join(', ')}`);
  out.push(`plan warnings (${r.warnings.length}):`);
  for (const w of r.warnings) out.push(`  ${w}`);
  return out;
}

export function registerCheckCommand(cli: Command, setExit: (code: number) => void): void {
  cli
    .command('check')
    .description('report the host kernel, the features vjail uses, and what a profile would emulate here')
    .option('--profile <name>', 'profile to plan (see "vjail profiles list")', 'host')
    .option('--json', 'print the report as one JSON object')
    .action((flags: { profile: string; json?: boolean }) => {
      if (flags.json) process.stdout.write(`${JSON.stringify(checkReport(flags.profile))}\n`);
      else process.stdout.write(`${checkLines(flags.profile).join('\n')}\n`);
      setExit(0);
    });
}
