import { closeSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { mountableKernelFiles } from '../shims/kernel-files.js';
import { compile } from './bpf/compile.js';
import { cgroupAt, createJailCgroup, endJailCgroup, removeStaleCgroups } from './cgroup.js';
import { errnoName } from './errno.js';
import { isolated, isolationLayout, type Isolation } from './isolation.js';
import { launch, CTL, type LaunchOptions } from './launch.js';
import { native, type ReceiverMode, type ReceiverState } from './native.js';
import { sys } from './native/fdio.js';
import type { Plan } from './plan/action.js';
import type { Shim } from '../shims/types.js';
import { cachedPlan, planInputs, type Planned } from './plan/cache.js';
import { describeHost } from './plan/host.js';
import { derivePlan } from './plan/plan.js';
import { jailCapabilities, ownCapabilityState } from './policy/capabilities.js';
import { loadOciPolicy } from './policy/oci.js';
import type { Policy } from './policy/types.js';
import { loadProfile } from './profile/load.js';
import type { Profile } from './profile/types.js';
import { probeHostSyscalls } from './probe.js';
import type { SyscallStats } from './supervisor/stats.js';
import { Supervisor } from './supervisor/supervisor.js';
import { mapsFor, newLayout, type UserNsLayout, type UserNsMaps, type UserNsMode } from './userns.js';

export interface JailOptions {
  /** Program and arguments (looked up in PATH). */
  command: string[];
  /** Kernel-ABI profile name or file (default `host`). */
  profile?: string | Profile;
  /** OCI seccomp policy file or an already loaded policy. */
  policy?: string | Policy;
  /** Use these syscalls' shims even where the host has them. */
  emulate?: string[];
  /**
   * The capabilities the jail holds, for the policy's capability conditions
   * (Docker's includes/excludes). Default: what the command of a jail this
   * process launches holds (src/policy/capabilities.ts).
   */
  capabilities?: readonly string[];
  /** Run the jail in its own PID namespace (and a private /proc); without root, in a user namespace too (`keep-id`). */
  pidNs?: boolean;
  /**
   * Run the jail in its own user namespace (src/userns.ts): `root` (uid 0
   * inside is the caller, the caller's subordinate IDs the rest), `keep-id`
   * (the caller keeps their IDs), or the exact inside IDs of a layout (restore).
   */
  userNs?: UserNsMode | UserNsLayout;
  /** Advanced: the command keeps vjail-init's capabilities in its user namespace across exec (see LaunchOptions.ambientCaps). */
  ambientCaps?: boolean;
  /** The jail's root file system, set up as a container's (implies pidNs; needs root). See src/isolation.ts. */
  rootfs?: Isolation['rootfs'];
  /** 'none': the jail's own network namespace with only loopback (needs root). */
  net?: Isolation['net'];
  /** The jail's host name, in its own UTS namespace (needs root). */
  hostname?: Isolation['hostname'];
  /** A cgroup directory the jail's processes join before the command runs. */
  cgroup?: string;
  /** Start the jail in a new time namespace whose CLOCK_MONOTONIC and CLOCK_BOOTTIME are ahead by these nanoseconds. */
  timeOffsets?: LaunchOptions['timeOffsets'];
  /**
   * How a non-host profile's /proc/version and /proc/sys/kernel/{ostype,osrelease,version}
   * are presented: 'mount' files over them in the jail's own mount namespace (no cost
   * per open; needs root or CAP_SYS_ADMIN), 'shim' answer every open in the supervisor,
   * 'auto' (default) mount when vjail runs as root.
   */
  kernelFiles?: 'auto' | 'mount' | 'shim';
  /** Receive one strace-style line per intercepted syscall. */
  trace?: (line: string) => void;
  /** Warnings (plan gaps, failing shims); default: stderr. */
  warn?: (line: string) => void;
  /**
   * Advanced: run under this plan instead of deriving one from profile,
   * policy and emulate (the profile still decides the shims' answers).
   */
  plan?: Plan;
  /** Advanced: shims added to (or replacing) the built-in ones, by name. */
  shims?: Shim[];
  /** A shim that has not answered after this long gets the profile's shim error (default 30 s). */
  shimTimeoutMs?: number;
  /** Who receives the jail's notifications (default 'auto': see ReceiverMode). */
  receiver?: ReceiverMode;
  /** Wake answered callers on the supervisor's CPU (default true; see SupervisorOptions). */
  syncWakeUp?: boolean;
  /** Keep idle CPUs awake during bursts of notifications (default false; see SupervisorOptions). */
  spin?: boolean;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  stdio?: LaunchOptions['stdio'];
  /** Advanced: a descriptor the command receives as its fd 4 (see LaunchOptions.passFd). */
  passFd?: number;
  /** Descriptors the command receives as its fds 3, 4, ... (see LaunchOptions.preserveFds). */
  preserveFds?: number[];
  /**
   * Advanced: start vjail-init through the program this returns (see
   * LaunchOptions.via). It is given the profile's kernel files to present
   * itself (vjail-init then mounts none): a container mounts them in its own root.
   */
  launchVia?: (kernelFiles: { source: string; target: string }[]) => string[];
  /** How long the launch may take until the workload installs its filter (default 10 s). */
  launchTimeoutMs?: number;
}

export interface JailExit {
  /** Exit code of the jail's main process, or null if a signal ended it. */
  code: number | null;
  /** Name of the signal that ended it, or null. */
  signal: NodeJS.Signals | null;
  /** Shell-style status: the code, or 128 + signal number. What `vjail run` exits with. */
  status: number;
  /** Set when the command could not be executed (errno name, e.g. ENOENT). */
  execError?: string;
}

const signalNames = new Map<number, NodeJS.Signals>(
  Object.entries(constants.signals).map(([name, n]) => [n, name as NodeJS.Signals]),
);

function exitFromWaitStatus(raw: number): JailExit {
  const sig = raw & 0x7f;
  if (sig === 0) {
    const code = (raw >> 8) & 0xff;
    return { code, signal: null, status: code };
  }
  return { code: null, signal: signalNames.get(sig) ?? null, status: 128 + sig };
}

/** A running jail: its main process, its plan, and how it ends. */
export class Jail {
  /** Resolves when every process of the jail has exited. */
  readonly exited: Promise<JailExit>;
  /** The jail's standard streams, where `stdio` asked for 'pipe' (else null). */
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;

  constructor(
    readonly pid: number,
    readonly plan: Plan,
    readonly profile: Profile,
    readonly warnings: string[],
    private readonly pidfd: number,
    private readonly supervisor: Supervisor,
    exited: Promise<JailExit>,
    streams: { stdin: Writable | null; stdout: Readable | null; stderr: Readable | null },
  ) {
    this.exited = exited;
    this.stdin = streams.stdin;
    this.stdout = streams.stdout;
    this.stderr = streams.stderr;
  }

  /** Send a signal to the jail's main process. */
  kill(signal: NodeJS.Signals | number = 'SIGTERM'): void {
    const n = typeof signal === 'number' ? signal : constants.signals[signal];
    try {
      native().pidfdSendSignal(this.pidfd, n);
    } catch {
      // Already gone: nothing to signal.
    }
  }

  /** Per-syscall counts and latency of intercepted calls so far. */
  stats(): SyscallStats[] {
    return this.supervisor.stats();
  }

  /** Who receives the jail's notifications now, and how many went to JavaScript. */
  receiverState(): ReceiverState | undefined {
    return this.supervisor.state();
  }
}

/** Resolve the options into the plan and filter a jail will run under. */
/** Warnings about the user's policy file, shown whether or not --verbose was given. */
export const isPolicyWarning = (w: string): boolean => w.startsWith('policy ');

export function planJail(opts: Pick<JailOptions, 'profile' | 'policy' | 'emulate' | 'capabilities'> & { kernelFilesMounted?: boolean }): {
  profile: Profile;
  plan: Plan;
  warnings: string[];
  filter: Buffer;
} {
  const profile = typeof opts.profile === 'object' ? opts.profile : loadProfile(opts.profile ?? 'host');
  // A policy file's capability conditions are evaluated with the jail's capabilities (read only when there is one).
  if (typeof opts.policy === 'string' && !opts.capabilities) opts = { ...opts, capabilities: jailCapabilities(ownCapabilityState()) };
  // In one process the same inputs are planned once (spawnJail in a loop; the library has no build id, so no disk cache).
  const key = planInputs({ ...opts, profile }, 'this process');
  const known = key === undefined ? undefined : plannedHere.get(key);
  if (known) return { profile, ...known };
  const planned = cachedPlan({ ...opts, profile }, () => {
    const policy =
      typeof opts.policy === 'string'
        ? loadOciPolicy(opts.policy, { kernelRelease: profile.uname.release, capabilities: opts.capabilities })
        : opts.policy;
    const host = describeHost(probeHostSyscalls);
    const { plan, warnings } = derivePlan(profile, host, {
      policy,
      emulate: opts.emulate,
      kernelFilesMounted: opts.kernelFilesMounted,
    });
    return { plan, warnings, filter: compile(plan) };
  });
  if (key !== undefined) {
    if (plannedHere.size >= 32) plannedHere.clear();
    plannedHere.set(key, planned);
  }
  return { profile, ...planned };
}

/** Plans made or read by this process, by their inputs (a plan is never changed once made). */
const plannedHere = new Map<string, Planned>();

/** Filters compiled from plans given as they are (a plan is never changed once made). */
const filters = new WeakMap<Plan, Buffer>();
function filterOf(plan: Plan): Buffer {
  let f = filters.get(plan);
  if (!f) filters.set(plan, (f = compile(plan)));
  return f;
}

/**
 * What a jail is started with: its profile, plan and filter, and the
 * profile's kernel files written where vjail-init mounts them (the caller
 * removes `kernelFiles.dir` once the jail has ended).
 */
export function prepareJail(opts: Pick<JailOptions, 'profile' | 'policy' | 'emulate' | 'kernelFiles' | 'plan' | 'capabilities'>): {
  profile: Profile;
  plan: Plan;
  warnings: string[];
  filter: Buffer;
  kernelFiles?: { dir: string; binds: { source: string; target: string }[] };
} {
  const profile = typeof opts.profile === 'object' ? opts.profile : loadProfile(opts.profile ?? 'host');
  const mode = opts.kernelFiles ?? 'auto';
  const mountFiles = !profile.isHost && (mode === 'mount' || (mode === 'auto' && process.geteuid?.() === 0));
  const planned = opts.plan
    ? { plan: opts.plan, warnings: [], filter: filterOf(opts.plan) }
    : planJail({ ...opts, profile, kernelFilesMounted: mountFiles });
  return { profile, ...planned, kernelFiles: mountFiles ? writeKernelFiles(profile) : undefined };
}

/**
 * Start `command` in a jail: every syscall its plan names is answered by our
 * supervisor, in this process, until the last process of the jail exits.
 */
export function spawnJail(opts: JailOptions): Jail {
  if (opts.command.length === 0) throw new Error('no command given');
  // A container's root has a /proc of its own PID namespace.
  if (opts.rootfs !== undefined && !opts.launchVia) opts = { ...opts, pidNs: true };
  const userNs = userNamespaceOf(opts);
  const layout = opts.launchVia ? undefined : isolationLayout(opts, { cwd: opts.cwd, userNs: userNs !== undefined });
  // Root of a user namespace of its own, the command holds every capability there: the policy's conditions see that.
  if (opts.userNs === 'root' && typeof opts.policy === 'string' && !opts.capabilities) {
    opts = { ...opts, capabilities: jailCapabilities(ownCapabilityState(), { rootInUserNs: true }) };
  }
  const { profile, plan, warnings, filter, kernelFiles } = prepareJail(opts);
  const warn = opts.warn ?? ((line: string) => process.stderr.write(`vjail: ${line}\n`));
  // A policy naming syscalls no table has is told always (runc logs and skips them): a typo there weakens the policy.
  for (const w of warnings) if (isPolicyWarning(w)) warn(`warning: ${w}`);
  keepOutOfReach();
  // Without a PID namespace, a cgroup is what still knows the jail's processes once its reaper is
  // gone (killed, or killed by the jail): they are ended with it (docs/SECURITY.md). A jail
  // launched through a setup helper (vjail-oci's container) is in the cgroups that helper joins,
  // under a root where this process's cgroup paths do not exist.
  const ownCgroup = !opts.cgroup && !opts.pidNs && !opts.launchVia ? runCgroup() : undefined;
  const cgroup = opts.cgroup ? cgroupAt(opts.cgroup) : ownCgroup;
  let launched;
  try {
    const timeoutMs = opts.launchTimeoutMs;
    launched = launch({
      timeoutMs,
      command: opts.command,
      filter,
      pidNs: opts.pidNs,
      userNs,
      ambientCaps: userNs && opts.ambientCaps,
      cgroup: cgroup?.path,
      timeOffsets: opts.timeOffsets,
      layout,
      binds: opts.launchVia ? undefined : kernelFiles?.binds,
      via: opts.launchVia?.(kernelFiles?.binds ?? []),
      cwd: opts.cwd,
      env: opts.env,
      stdio: opts.stdio,
      passFd: opts.passFd,
      preserveFds: opts.preserveFds,
    });
  } catch (e) {
    if (kernelFiles) rmSync(kernelFiles.dir, { recursive: true, force: true });
    // vjail-init ends the jail on its way out; what it leaves in the cgroup is killed, then the cgroup removed.
    if (ownCgroup) void endJailCgroup(ownCgroup, { remove: true });
    throw e;
  }
  const supervisor = new Supervisor({
    listenerFd: launched.listenerFd,
    plan,
    profile,
    trace: opts.trace,
    warn,
    shims: opts.shims,
    shimTimeoutMs: opts.shimTimeoutMs,
    receiver: opts.receiver,
    syncWakeUp: opts.syncWakeUp,
    spin: opts.spin,
  });
  supervisor.start();

  const exited = new Promise<JailExit>((resolve) => {
    launched.init.on('exit', (code, signal) => {
      const n = native();
      let result: JailExit | undefined;
      let execError: string | undefined;
      // Everything the jail said is in the socket by now: vjail-init exits last.
      for (;;) {
        let msg;
        try {
          msg = n.recvCtl(launched.ctlFd, 0);
        } catch {
          break;
        }
        if (!msg) break;
        if (msg.type === CTL.EXEC_FAILED) execError = errnoName(msg.a);
        if (msg.type === CTL.EXIT) result = exitFromWaitStatus(msg.a);
      }
      if (!result) {
        // vjail-init itself was killed, or the jail was killed as a whole.
        const status = code ?? 128 + (signal ? constants.signals[signal] : 9);
        result = { code: code ?? null, signal: signal ?? null, status };
      }
      const exit = execError ? { ...result, execError } : result;
      // vjail-init reaps the whole jail before it exits; if it was killed, nothing outlives it:
      // the jail is reported ended once its cgroup holds no process (waited for without blocking).
      const emptied = cgroup ? endJailCgroup(cgroup, { remove: cgroup === ownCgroup }) : Promise.resolve(true);
      void emptied.then((ok) => {
        if (!ok) warn(`processes of the jail are still in ${cgroup!.path} 5 s after SIGKILL`);
        supervisor.stop();
        closeSync(launched.ctlFd);
        closeSync(launched.pidfd);
        if (kernelFiles) rmSync(kernelFiles.dir, { recursive: true, force: true });
        resolve(exit);
      });
    });
  });
  const { stdin, stdout, stderr } = launched.init;
  return new Jail(launched.pid, plan, profile, warnings, launched.pidfd, supervisor, exited, { stdin, stdout, stderr });
}

/**
 * The maps of the jail's user namespace, if it has one: asked for, or what
 * its other namespaces (--pid-ns, --rootfs, --net none, --hostname) need
 * without root, the user keeping their IDs.
 */
function userNamespaceOf(opts: JailOptions): UserNsMaps | undefined {
  const needsOne = !opts.launchVia && (opts.pidNs || isolated(opts)) && process.geteuid?.() !== 0;
  const wanted = opts.userNs ?? (needsOne ? 'keep-id' : undefined);
  if (wanted === undefined) return undefined;
  return mapsFor(typeof wanted === 'string' ? newLayout(wanted) : wanted);
}

let jailsStarted = 0;
const RUN_CGROUPS = 'vjail-run';

/** A cgroup for a jail started without one (the first in this process clears those of supervisors gone). */
export function runCgroup(): ReturnType<typeof createJailCgroup> {
  if (jailsStarted === 0) removeStaleCgroups(RUN_CGROUPS);
  return createJailCgroup(`run${++jailsStarted}`, RUN_CGROUPS);
}

const SYS_PRCTL = 157;
const PR_SET_DUMPABLE = 4;

/**
 * The supervisor holds the listener and answers for the jail: a workload of
 * the same user must not write its memory (/proc/PID/mem) or trace it. Not
 * dumpable, only CAP_SYS_PTRACE opens it (docs/SECURITY.md). Checkpoints run
 * in their own process and trace the jail, never this one.
 */
export function keepOutOfReach(): void {
  sys(SYS_PRCTL, PR_SET_DUMPABLE, 0);
}

/** The profile's kernel files, written where vjail-init can mount them over the real ones. */
function writeKernelFiles(profile: Profile): { dir: string; binds: { source: string; target: string }[] } {
  const dir = mkdtempSync(join(tmpdir(), 'vjail-kernel-'));
  const binds = [...mountableKernelFiles(profile)].map(([target, content], i) => {
    const source = join(dir, String(i));
    writeFileSync(source, content, { mode: 0o444 });
    return { source, target };
  });
  return { dir, binds };
}


