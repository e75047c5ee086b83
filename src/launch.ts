import { spawn, type IOType } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { Readable, Stream, Writable } from 'node:stream';
import { closeSync, openSync, readFileSync, readlinkSync } from 'node:fs';
import { constants } from 'node:os';
import { initPath, isNativeError, native } from './native.js';
import { mapArgument, type UserNsMaps } from './userns.js';
import { sleepSync } from './sleep-sync.js';

/** Control-protocol message types (native/protocol.h). */
export const CTL = { HELLO: 1, SETUP_FAILED: 2, EXEC_FAILED: 3, EXIT: 4 } as const;

const STEPS: Record<number, string> = {
  1: 'reading the filter',
  2: 'opening a pidfd (needs Linux 5.3+)',
  3: 'setting no_new_privs',
  4: 'installing the seccomp filter (needs Linux 5.0+ for user notification)',
  5: 'the launch handshake',
  6: 'fork',
  7: 'creating the PID namespace (needs root or CAP_SYS_ADMIN)',
  8: 'mounting /proc in the PID namespace',
  9: 'joining the cgroup',
  10: 'mounting the profile\'s kernel files (needs root or CAP_SYS_ADMIN)',
  11: 'creating the time namespace (needs Linux 5.6+ with time namespaces, and root or CAP_SYS_ADMIN)',
  12: 'locking down the launcher (its own seccomp filter)',
  13: 'creating the user namespace (its ID maps were refused: newuidmap/newgidmap say why above)',
  14: 'keeping the restorer\'s capabilities in the user namespace (ambient capabilities, Linux 4.3+)',
  15: 'setting up the root file system (--rootfs: its mounts, devices and pivot_root; needs root or CAP_SYS_ADMIN)',
  16: 'isolating the jail (--net none, --hostname: a new network or UTS namespace; needs root or CAP_SYS_ADMIN)',
  17: 'handing the preserved descriptors (--preserve-fds) to the command',
};

/** Where one of the jail's standard fds goes (as for child_process.spawn). */
export type StdioEntry = IOType | 'inherit' | number | Stream | null | undefined;

/** The jail could not be started; the message says why and what to do. */
export class LaunchError extends Error {}

export interface LaunchOptions {
  command: string[];
  filter: Buffer;
  pidNs?: boolean;
  /** Start the jail in a new user namespace with these ID maps (userns.ts); its other namespaces are that one's. */
  userNs?: UserNsMaps;
  /** The workload keeps vjail-init's capabilities across exec as ambient ones (the restorer in a user namespace). */
  ambientCaps?: boolean;
  cgroup?: string;
  /** Files to mount read-only over paths in the jail's own mount namespace. */
  binds?: { source: string; target: string }[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  stdio?: [StdioEntry, StdioEntry, StdioEntry];
  /**
   * Start the jail in a new time namespace with these offsets (nanoseconds)
   * added to CLOCK_MONOTONIC and CLOCK_BOOTTIME.
   */
  timeOffsets?: { monotonic: bigint; boottime: bigint };
  /** A container setup plan for vjail-init (src/isolation.ts): root file system, network, host name. */
  layout?: string;
  /** How long to wait for the workload to install its filter. */
  timeoutMs?: number;
  /**
   * A descriptor handed to the workload as its fd 4 (fd 3 is vjail-init's
   * control socket, closed at exec): restore passes the restorer the socket
   * it receives the image's descriptors on.
   */
  passFd?: number;
  /**
   * Descriptors the command receives as its fds 3, 4, ... in this order (an
   * OCI runtime's --preserve-fds); not with passFd.
   */
  preserveFds?: number[];
  /**
   * A program vjail-init is started through: this argv, then vjail-init's
   * path and arguments (vjail-oci's container setup, which execs vjail-init).
   */
  via?: string[];
}

/** What the jail uses of its launcher's process (a ChildProcess, or an InheritingInit). */
export interface InitProcess {
  readonly pid?: number;
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  on(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  kill(signal?: NodeJS.Signals | number): boolean;
}

export interface Launched {
  /** vjail-init, the jail's reaper. */
  init: InitProcess;
  /** The workload's pid in our PID namespace. */
  pid: number;
  pidfd: number;
  /** Our copy of the seccomp listener. */
  listenerFd: number;
  /** Our end of the control socket (exec failure and exit status arrive here). */
  ctlFd: number;
}

const LISTENER_LINK = 'anon_inode:seccomp notify';

function pidOfPidfd(pidfd: number): number {
  const m = /^Pid:\s+(-?\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${pidfd}`, 'utf8'));
  return m ? Number(m[1]) : -1;
}

/**
 * Fetch the workload's listener with pidfd_getfd. The workload told us which
 * fd number it will get; it may not have installed the filter yet, so retry
 * until that fd is a seccomp listener (the workload then waits in the
 * handshake prctl until the supervisor answers).
 */
function fetchListener(ctlFd: number, pidfd: number, fdNumber: number, deadline: number): number {
  const n = native();
  for (;;) {
    try {
      const fd = n.pidfdGetfd(pidfd, fdNumber);
      if (readlinkSync(`/proc/self/fd/${fd}`) === LISTENER_LINK) return fd;
      closeSync(fd);
    } catch (e) {
      if (!isNativeError(e) || e.code !== 'EBADF') {
        if (isNativeError(e) && (e.code === 'EPERM' || e.code === 'EACCES'))
          throw new LaunchError('cannot fetch the seccomp listener from the workload (pidfd_getfd: permission denied); run vjail as the same user as the workload, and check kernel.yama.ptrace_scope');
        if (isNativeError(e) && e.code === 'ENOSYS') throw new LaunchError('this kernel lacks pidfd_getfd (Linux 5.6+ is needed)');
        if (isNativeError(e) && e.code === 'ESRCH') break;
        throw e;
      }
    }
    if (Date.now() > deadline) throw new LaunchError('the workload did not install its seccomp filter in time');
    // It is between its hello and seccomp(2): a few microseconds unless it was preempted.
    sleepSync(0.05);
  }
  // The workload died before installing the filter: it sent why.
  const msg = n.recvCtl(ctlFd, 100);
  throw setupError(msg?.type === CTL.SETUP_FAILED ? msg : undefined);
}

function setupError(msg?: { a: number; b: number }): LaunchError {
  if (!msg) return new LaunchError('the jail ended before it started');
  const step = STEPS[msg.b] ?? `step ${msg.b}`;
  return new LaunchError(`could not start the jail: ${step} failed (errno ${msg.a})`);
}

/** The addon's spawn (native/spawn.c) and descriptor watch (native/resident.c). */
interface SpawnAddon {
  spawnInheriting(file: string, argv: string[], envPairs: string[], cwd: string | null, fds: number[]): { pid: number; pidfd: number };
  reap(pid: number): { code: number; signal: number } | null;
  fdWatch(fd: number, onReadable: () => void): object;
  fdUnwatch(handle: object): void;
}

const signalNames = new Map<number, NodeJS.Signals>(Object.entries(constants.signals).map(([name, n]) => [n, name as NodeJS.Signals]));

/**
 * The launcher's process when every one of its fds is inherited (or
 * /dev/null), started by clone(CLONE_VM | CLONE_VFORK): no fork of Node's memory (child_process
 * and libuv fork, several ms for a process of Node's size), and without
 * loading child_process (and with it net and the streams). Its exit is seen
 * on a pidfd. Emits 'exit' as ChildProcess does.
 */
class InheritingInit extends EventEmitter implements InitProcess {
  readonly stdin = null;
  readonly stdout = null;
  readonly stderr = null;
  readonly pid: number;
  private pidfd: number;
  private watch: object | undefined;

  constructor(addon: SpawnAddon, file: string, args: string[], env: NodeJS.ProcessEnv, cwd: string | undefined, fds: number[]) {
    super();
    const envPairs = Object.entries(env).flatMap(([k, v]) => (v === undefined ? [] : [`${k}=${v}`]));
    const child = addon.spawnInheriting(file, [file, ...args], envPairs, cwd ?? null, fds);
    this.pid = child.pid;
    this.pidfd = child.pidfd;
    this.watch = addon.fdWatch(this.pidfd, () => {
      const ended = addon.reap(this.pid);
      if (!ended || this.watch === undefined) return;
      addon.fdUnwatch(this.watch);
      this.watch = undefined;
      closeSync(this.pidfd);
      this.pidfd = -1;
      const signal = ended.signal ? (signalNames.get(ended.signal) ?? null) : null;
      this.emit('exit', signal ? null : ended.code, signal);
    });
  }

  kill(signal: NodeJS.Signals | number = 'SIGTERM'): boolean {
    if (this.pidfd < 0) return false;
    try {
      native().pidfdSendSignal(this.pidfd, typeof signal === 'number' ? signal : constants.signals[signal]);
      return true;
    } catch {
      return false;
    }
  }
}

/** The most fds the addon's spawn hands a child (native/spawn.c MAX_FDS); child_process takes more. */
const MAX_INHERITED_FDS = 64;

/** Spawn `file` with all its fds inherited (the stdio entries 'inherit', 'ignore' or fd numbers), else undefined: use child_process. */
function spawnInheriting(file: string, args: string[], stdio: StdioEntry[], opts: LaunchOptions): InitProcess | undefined {
  if (!stdio.every((s) => s === 'inherit' || s === undefined || s === 'ignore' || (Number.isInteger(s) && (s as number) >= 0))) return undefined;
  if (stdio.length > MAX_INHERITED_FDS) return undefined;
  const addon = native() as unknown as SpawnAddon;
  const nulls: number[] = [];
  const fds = stdio.map((s, i) => {
    if (s === 'ignore') {
      const fd = openSync('/dev/null', i === 0 ? 'r' : 'w');
      nulls.push(fd);
      return fd;
    }
    return s === 'inherit' || s === undefined ? i : (s as number);
  });
  try {
    return new InheritingInit(addon, file, args, opts.env ?? process.env, opts.cwd, fds);
  } catch (e) {
    if (!isNativeError(e) || e.syscall !== 'spawn') throw e;
    // The launcher is missing or cannot run: launch() says so.
    return Object.assign(new EventEmitter(), { pid: undefined, stdin: null, stdout: null, stderr: null, kill: () => false }) as InitProcess;
  } finally {
    for (const fd of nulls) closeSync(fd);
  }
}

/**
 * Start the launcher, hand it the filter, and come back holding the
 * workload's seccomp listener. The workload is then blocked in the launch
 * handshake until the supervisor starts answering on that listener.
 */
export function launch(opts: LaunchOptions): Launched {
  const n = native();
  const [ctlFd, childCtl] = n.socketpair();
  const args = ['--parent', String(process.pid)];
  if (opts.pidNs) args.push('--pid-ns');
  if (opts.userNs) {
    args.push('--uid-map', mapArgument(opts.userNs.uid), '--gid-map', mapArgument(opts.userNs.gid));
    if (opts.userNs.newidmap) args.push('--newidmap');
  }
  if (opts.ambientCaps) args.push('--ambient-caps');
  if (opts.cgroup) args.push('--cgroup', opts.cgroup);
  if (opts.timeOffsets) args.push('--time-offsets', `${opts.timeOffsets.monotonic}:${opts.timeOffsets.boottime}`);
  for (const b of opts.binds ?? []) args.push('--bind', `${b.source}:${b.target}`);
  if (opts.layout) args.push('--layout', opts.layout);
  if (opts.passFd !== undefined) args.push('--pass-fd');
  const preserved = opts.preserveFds ?? [];
  if (preserved.length) args.push('--preserve-fds', String(preserved.length));
  args.push('--', ...opts.command);
  const stdio: StdioEntry[] = [...(opts.stdio ?? ['inherit', 'inherit', 'inherit']), childCtl];
  if (opts.passFd !== undefined) stdio.push(opts.passFd);
  // vjail-init takes preserved descriptors from its fd 5 (native/protocol.h VJAIL_PRESERVED_FD); 4 is the passed one's place.
  if (preserved.length) stdio.push(...(opts.passFd === undefined ? ['ignore' as const] : []), ...preserved);
  let init: InitProcess;
  const [file, argv] = opts.via?.length ? [opts.via[0]!, [...opts.via.slice(1), initPath(), ...args]] : [initPath(), args];
  try {
    init = spawnInheriting(file, argv, stdio, opts) ?? spawn(file, argv, { stdio, cwd: opts.cwd, env: opts.env });
  } finally {
    closeSync(childCtl);
  }
  // spawn reports a missing or unrunnable launcher as an 'error' event after
  // returning; without a listener that event would crash the process.
  init.on('error', () => {});
  if (init.pid === undefined) {
    closeSync(ctlFd);
    throw new LaunchError(`cannot start the launcher ${initPath()}; run "npm install" to build it`);
  }
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  try {
    n.sendMessage(ctlFd, opts.filter);
    const hello = n.recvCtl(ctlFd, opts.timeoutMs ?? 10_000);
    if (!hello || hello.type !== CTL.HELLO || hello.fd < 0) throw setupError(hello ?? undefined);
    const pidfd = hello.fd;
    const listenerFd = fetchListener(ctlFd, pidfd, hello.a, deadline);
    return { init, pid: pidOfPidfd(pidfd), pidfd, listenerFd, ctlFd };
  } catch (e) {
    // SIGUSR2 asks vjail-init to kill the whole jail (as when the supervisor dies).
    init.kill('SIGUSR2');
    closeSync(ctlFd);
    throw e;
  }
}
