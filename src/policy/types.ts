import type { Action, ArchName, ArgCondition } from '../plan/action.js';

/**
 * A seccomp policy as vjail understands it, independent of its file format
 * (OCI runtime-spec JSON today). Entries are tried in order per syscall name;
 * an entry applies when all its conditions hold.
 */
export interface PolicyEntry {
  names: string[];
  action: Action;
  conditions: ArgCondition[];
}

export interface Policy {
  /** Where it came from (file path or 'builtin'), for messages. */
  source: string;
  defaultAction: Action;
  /** Architectures the policy admits; calls from others take `foreignArch` in the plan. */
  arches: ArchName[];
  entries: PolicyEntry[];
  /** Names the file gave that no admitted architecture has: left out of `entries`, reported as a warning. */
  unknownSyscalls?: string[];
}
