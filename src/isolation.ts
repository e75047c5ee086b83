/**
 * The isolation a container gives, for `vjail run` without an engine:
 * `--rootfs DIR` (DIR as the jail's root, with a container's /proc, /dev,
 * /sys and /tmp), `--net none` (a network namespace with only loopback, up),
 * `--hostname NAME` (a UTS namespace). They become a setup plan in the format
 * vjail-oci's containers use (native/setup_plan.h), built from the same
 * mounts and devices as `vjail-oci spec`, which vjail-init carries out.
 */
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { LaunchError } from './launch.js';
import { deviceLines, line, mountLines } from './oci/plan-file.js';
import { CONTAINER_MOUNTS, MASKED_PATHS, READONLY_PATHS } from './oci/spec.js';

export interface Isolation {
  /** The jail's root file system (a directory; implies a PID namespace). */
  rootfs?: string;
  /** 'none': a network namespace of the jail's own with only loopback; 'host' (default): the host's network. */
  net?: 'none' | 'host';
  /** The jail's host name, in a UTS namespace of its own. */
  hostname?: string;
}

/** Options that cannot make a jail; the message says which and how to fix it. */
export class IsolationError extends LaunchError {}

/** A container's /tmp, beside the standard mounts. */
const TMP_MOUNT = { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] };

/** Is any isolation asked for? */
export function isolated(i: Isolation): boolean {
  return i.rootfs !== undefined || i.net === 'none' || i.hostname !== undefined;
}

/**
 * The setup plan for vjail-init's --layout, or undefined when none is asked
 * for. Relative paths are the caller's (cwd). Needs root: a jail in a user
 * namespace of its own (`--user-ns`) gets them there without, and its
 * launch passes `userNs` (vjail-init enters that namespace first).
 */
export function isolationLayout(i: Isolation, opts: { cwd?: string; userNs?: boolean } = {}): string | undefined {
  if (!isolated(i)) return undefined;
  if (i.net !== undefined && i.net !== 'none' && i.net !== 'host') throw new IsolationError(`--net ${i.net}: unknown network; use none or host`);
  if (process.geteuid?.() !== 0 && !opts.userNs) {
    throw new IsolationError('--rootfs, --net none and --hostname need root (mount, pivot_root and new namespaces); run vjail as root');
  }
  let out = '';
  if (i.hostname !== undefined) {
    if (!/^[A-Za-z0-9][A-Za-z0-9.-]{0,63}$/.test(i.hostname) || i.hostname.length > 64) {
      throw new IsolationError(`--hostname ${JSON.stringify(i.hostname)}: not a host name; use letters, digits, dots and dashes, at most 64`);
    }
    out += line('ns', 'uts') + line('hostname', i.hostname);
  }
  if (i.net === 'none') out += line('ns', 'network');
  if (i.rootfs !== undefined) {
    const rootfs = resolve(opts.cwd ?? process.cwd(), i.rootfs);
    let dir = false;
    try {
      dir = statSync(rootfs).isDirectory();
    } catch {
      // said below
    }
    if (!dir) throw new IsolationError(`--rootfs ${i.rootfs}: not a directory; give the directory holding the jail's root file system`);
    out += line('rootfs', rootfs) + mountLines([...CONTAINER_MOUNTS, TMP_MOUNT], rootfs, []) + deviceLines([]);
    for (const p of MASKED_PATHS) out += line('mask', p);
    for (const p of READONLY_PATHS) out += line('readonly', p);
  }
  return out;
}
