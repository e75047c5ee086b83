/**
 * A container process under vjail's supervisor: vjail-oci-setup builds (or
 * joins) the container and execs vjail-init, which installs the seccomp
 * filter, composed from the profile (annotation io.vjail.profile, default
 * host), io.vjail.emulate and the config's linux.seccomp.
 */
import { writeFileSync } from 'node:fs';
import { spawnJail, type Jail } from '../jail.js';
import { ALL_CAPABILITIES, parseOciPolicy } from '../policy/oci.js';
import type { Policy } from '../policy/types.js';
import type { OciConfig, OciProcess } from './config.js';
import { OciError } from './errors.js';
import { setupPath } from './paths.js';

/** A bound on how long a created container waits for `start`: a week. */
const START_BOUND_MS = 7 * 24 * 3600 * 1000;

export interface SuperviseOptions {
  config: OciConfig;
  process: OciProcess;
  planFile: string;
  /** The setup plan, given the profile's kernel files to present. */
  plan: (kernelFiles: { source: string; target: string }[]) => string;
  /** Where setup reports "ok" or "error: ..." (its fd 4). */
  readyFd: number;
  /** Descriptors the process receives as its fds 3, 4, ... (--preserve-fds). */
  preserveFds?: number[];
  warn: (line: string) => void;
}

export function vjailOptions(config: OciConfig): { profile: string; emulate?: string[] } {
  const a = config.annotations ?? {};
  const emulate = a['io.vjail.emulate']?.split(',').map((s) => s.trim()).filter(Boolean);
  return { profile: a['io.vjail.profile'] || 'host', emulate };
}

/**
 * The capabilities the container's process holds, for its policy's capability
 * conditions (Docker evaluates its profile with the container's): those it is
 * given; without process.capabilities it keeps its own, the full set of root.
 */
export function processCapabilities(p: OciProcess): string[] {
  const c = p.capabilities;
  if (!c) return p.user.uid === 0 ? [...ALL_CAPABILITIES] : [];
  return [...new Set([...(c.effective ?? []), ...(c.permitted ?? [])])];
}

/** The config's linux.seccomp as a policy (none without one), its conditions on the process's capabilities. */
export function configPolicy(config: OciConfig, process: OciProcess): Policy | undefined {
  const seccomp = config.linux?.seccomp;
  return seccomp === undefined || seccomp === null
    ? undefined
    : parseOciPolicy(seccomp, 'config.json linux.seccomp', { capabilities: processCapabilities(process) });
}

export function supervise(o: SuperviseOptions): Jail {
  const { profile, emulate } = vjailOptions(o.config);
  const policy = configPolicy(o.config, o.process);
  try {
    return spawnJail({
      command: o.process.args,
      profile,
      policy,
      emulate,
      env: {},
      stdio: ['inherit', 'inherit', 'inherit'],
      passFd: o.readyFd,
      preserveFds: o.preserveFds,
      warn: o.warn,
      launchTimeoutMs: START_BOUND_MS,
      launchVia: (kernelFiles) => {
        writeFileSync(o.planFile, o.plan(kernelFiles), { mode: 0o600 });
        return [setupPath(), o.planFile];
      },
    });
  } catch (e) {
    throw new OciError((e as Error).message);
  }
}
