/**
 * Every x86_64 syscall added after Linux 5.9 (vjail's oldest supported host)
 * either has a shim, answering it on hosts that lack it, or a one-line reason
 * here why no shim could answer it honestly. docs/SUPPORT.md shows the table;
 * a test keeps it complete as the syscall tables grow.
 */
import { shimForSyscall } from '../shims/index.js';
import { syscallTable } from './syscalls/table.js';
import { compareKernelVersions } from './syscalls/version.js';

/** vjail's oldest supported host kernel. */
export const OLDEST_HOST = '5.9';

/** Why a syscall newer than OLDEST_HOST has no shim: on a host without it, callers get ENOSYS with a plan warning. */
export const NO_SHIM_REASONS: Readonly<Record<string, string>> = {
  process_madvise: "advises another process's memory through a pidfd; the supervisor cannot act on that process's memory on its behalf",
  mount_setattr: 'changes attributes of a whole mount tree (idmapped mounts among them), which no older call can do',
  landlock_create_ruleset: 'Landlock is enforced by the kernel alone; an answer that does not enforce would claim a restriction that does not hold',
  landlock_add_rule: 'as landlock_create_ruleset',
  landlock_restrict_self: 'as landlock_create_ruleset',
  memfd_secret: "memory taken out of the kernel's direct map exists only where the kernel provides it",
  quotactl_fd: "quotactl needs the filesystem's block device, which the caller's mount namespace need not show",
  process_mrelease: "releases a dying process's memory early, inside the kernel; nothing outside it can",
  futex_waitv: 'waits on several futexes at once; single waits made one after another would miss wake-ups between them',
  set_mempolicy_home_node: "a NUMA placement hint only the kernel's allocator can honour",
  map_shadow_stack: 'a CET shadow stack can be made only by the kernel, for the CPU',
  listmount: 'its 64-bit mount ids appear nowhere in /proc, so no answer could be consistent with the rest of the system',
  statmount: 'as listmount',
  lsm_get_self_attr: "/proc/PID/attr shows one LSM's view; the per-LSM attributes these calls return cannot be rebuilt from it",
  lsm_set_self_attr: 'as lsm_get_self_attr',
  lsm_list_modules: 'as lsm_get_self_attr',
  mseal: 'seals could only be enforced by intercepting every mprotect, munmap, mremap, madvise and MAP_FIXED mmap; not offered where the host lacks it',
  uretprobe: 'called only from the trampoline the kernel installs for a uretprobe; any other caller gets SIGILL from the kernel itself',
  uprobe: 'as uretprobe, for the trampoline of an optimized uprobe',
  open_tree_attr: 'open_tree with mount attributes applied to the detached tree, which needs mount_setattr',
};

export interface NewerSyscall {
  name: string;
  added: string;
  /** The shim answering it, if any. */
  shim?: string;
  /** Why there is none, if none. */
  reason?: string;
}

/** The x86_64 syscalls added after OLDEST_HOST, oldest first, each with its shim or reason. */
export function newerSyscalls(): NewerSyscall[] {
  return syscallTable('x86_64')
    .all.filter((s) => compareKernelVersions(s.added, OLDEST_HOST) > 0)
    .sort((a, b) => compareKernelVersions(a.added, b.added) || a.name.localeCompare(b.name))
    .map((s) => {
      const shim = shimForSyscall(s.name)?.name;
      const reason = NO_SHIM_REASONS[s.name];
      return { name: s.name, added: s.added, ...(shim && { shim }), ...(reason && { reason }) };
    });
}

/** The SUPPORT.md section. */
export function newerSyscallsMarkdown(): string {
  const rows = newerSyscalls().map((s) => `| \`${s.name}\` | ${s.added} | ${s.shim ? `shim \`${s.shim}\`` : `no shim: ${s.reason ?? '(no reason given)'}`} |`);
  return `## Syscalls newer than the oldest host (${OLDEST_HOST})

Under a profile that has one of these on a host that lacks it, the shim
answers; without a shim the caller gets ENOSYS (a plan warning says so), for
the reason given.

| syscall | Linux | answered by |
| --- | --- | --- |
${rows.join('\n')}`;
}
