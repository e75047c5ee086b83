/**
 * The capabilities a jail holds, against which a policy's Docker-style
 * `includes`/`excludes` capability conditions are evaluated (as Docker does
 * with the container's capabilities): `--policy docker` then allows
 * unshare, mount or setns only to a jail that holds CAP_SYS_ADMIN.
 *
 * The jail's command is exec'd by vjail-init with no_new_privs set, so
 * neither setuid bits nor file capabilities add any (capabilities(7), and the
 * kernel's cap_bprm_creds_from_file: with no_new_privs the new permitted set
 * is cut to the old one). What it holds after exec is then:
 * - effective user root: its bounding and inheritable sets, within its permitted set;
 * - any other user: its ambient set.
 *
 * Root in a user namespace of its own (`--user-ns`), the jail holds every
 * capability within that namespace: pass `rootInUserNs` to say so (as
 * rootless Docker grants a container's capabilities in its namespace).
 */
import { readFileSync } from 'node:fs';
import { ALL_CAPABILITIES } from './oci.js';

/** The credentials the jail inherits from its launcher: /proc/self/status's Uid and Cap* lines. */
export interface CapabilityState {
  euid: number;
  permitted: bigint;
  bounding: bigint;
  inheritable: bigint;
  ambient: bigint;
}

/** Parse "Uid:" (real, effective, ...) and "CapInh/CapPrm/CapBnd/CapAmb:" (hex) lines of a /proc/PID/status text. */
export function parseCapabilityState(status: string): CapabilityState {
  const field = (name: string): string => {
    const m = new RegExp(`^${name}:\\s+(.*)$`, 'm').exec(status);
    if (!m) throw new Error(`no ${name} line in the process status`);
    return m[1]!.trim();
  };
  const hex = (name: string): bigint => BigInt(`0x${field(name)}`);
  return {
    euid: Number(field('Uid').split(/\s+/)[1]),
    permitted: hex('CapPrm'),
    bounding: hex('CapBnd'),
    inheritable: hex('CapInh'),
    ambient: hex('CapAmb'),
  };
}

/** This process's state, which a jail it launches inherits. */
export function ownCapabilityState(): CapabilityState {
  return parseCapabilityState(readFileSync('/proc/self/status', 'utf8'));
}

/** The capability names the jail's command holds after exec (see above). */
export function jailCapabilities(s: CapabilityState, opts: { rootInUserNs?: boolean } = {}): string[] {
  if (opts.rootInUserNs) return [...ALL_CAPABILITIES];
  const mask = s.euid === 0 ? (s.bounding | s.inheritable) & s.permitted : s.ambient;
  return ALL_CAPABILITIES.filter((_, bit) => (mask >> BigInt(bit)) & 1n);
}
