/**
 * A container's state under --root: <root>/<id>/ holds state.json (written
 * by create and the monitor), the setup plan, and the start fifo.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inUserNamespace } from '../userns.js';
import { OciError } from './errors.js';
import type { OciConfig } from './config.js';

export interface Stored {
  id: string;
  bundle: string;
  /**
   * The container's first process (vjail-init, its PID 1) as the host sees
   * it: the pid engines are given. It exits with the container's status and,
   * its parent gone, is re-parented to the engine's subreaper.
   */
  pid: number;
  /** The monitor: vjail's supervisor of the container's processes. */
  monitorPid: number;
  /** The container's process as the host sees it, once started. */
  workloadPid?: number;
  /** vjail-init, the container's PID 1 (reaper), as the host sees it. */
  initPid?: number;
  created: string;
  started?: boolean;
  /** Set by the monitor when every process of the container has ended. */
  exitStatus?: number;
  cgroups: string[];
  freezer?: { kind: 'v1' | 'v2'; path: string };
  annotations: Record<string, string>;
  config: OciConfig;
}

export type Status = 'creating' | 'created' | 'running' | 'paused' | 'stopped';

/** As runc: under $XDG_RUNTIME_DIR when not root, or root only of a user namespace (rootless engines). */
export function defaultRoot(): string {
  if ((process.geteuid?.() !== 0 || inUserNamespace()) && process.env.XDG_RUNTIME_DIR) return join(process.env.XDG_RUNTIME_DIR, 'vjail-oci');
  return '/run/vjail-oci';
}

const ID = /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,254}$/;

export function containerDir(root: string, id: string): string {
  if (!ID.test(id)) throw new OciError(`invalid container id "${id}"; use letters, digits and _.+- (at most 255)`);
  return join(root, id);
}

export function readStored(root: string, id: string): Stored {
  const file = join(containerDir(root, id), 'state.json');
  if (!existsSync(file)) throw new OciError(`container "${id}" does not exist`);
  return JSON.parse(readFileSync(file, 'utf8')) as Stored;
}

export function writeStored(root: string, s: Stored): void {
  const dir = containerDir(root, s.id);
  mkdirSync(dir, { recursive: true });
  const tmp = join(dir, `state.json.${process.pid}`);
  writeFileSync(tmp, JSON.stringify(s));
  renameSync(tmp, join(dir, 'state.json'));
}

export function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie (the monitor ended, its parent has not reaped it yet) is not running.
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

function frozen(s: Stored): boolean {
  if (!s.freezer) return false;
  try {
    if (s.freezer.kind === 'v2') return readFileSync(join(s.freezer.path, 'cgroup.freeze'), 'utf8').trim() === '1';
    return readFileSync(join(s.freezer.path, 'freezer.state'), 'utf8').trim() !== 'THAWED';
  } catch {
    return false;
  }
}

export function statusOf(s: Stored): Status {
  if (s.exitStatus !== undefined || !alive(s.pid) || !alive(s.monitorPid)) return 'stopped';
  if (!s.started) return 'created';
  if (s.workloadPid && !alive(s.workloadPid)) return 'stopped';
  return frozen(s) ? 'paused' : 'running';
}

/** The OCI state JSON (runtime-spec "State"). */
export function ociState(s: Stored): object {
  const status = statusOf(s);
  return {
    ociVersion: '1.0.2',
    id: s.id,
    status,
    pid: status === 'stopped' ? 0 : s.pid,
    bundle: s.bundle,
    annotations: s.annotations,
    created: s.created,
  };
}
