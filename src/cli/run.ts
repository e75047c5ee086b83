import { createWriteStream, type WriteStream } from 'node:fs';
import { resolve } from 'node:path';
import { isatty } from 'node:tty';
import { nodeBinding } from '../binding.js';
import { baselineEnv } from '../checkpoint/cpu-baseline.js';
import { isPolicyWarning, spawnJail, type Jail, type JailOptions } from '../jail.js';
import type { ReceiverMode } from '../native.js';
import { formatStats } from '../supervisor/stats.js';
import { UsageError } from './errors.js';

export interface RunFlags {
  profile: string;
  policy?: string;
  trace?: string | boolean;
  stats?: boolean;
  pidNs?: boolean;
  rootfs?: string;
  net?: 'none' | 'host';
  hostname?: string;
  /** Its own user namespace, uid 0 inside being the caller (src/userns.ts). */
  userNs?: boolean;
  emulate?: string;
  /** Keep glibc to x86-64 baseline code paths (checkpoints restore on lesser CPUs). */
  cpuBaseline?: boolean;
  verbose?: boolean;
  kernelFiles?: 'auto' | 'mount' | 'shim';
  receiver?: ReceiverMode;
  /** 'auto': keep idle CPUs awake while notifications come fast (SupervisorOptions.spin); 'off' (default): never. */
  spin?: 'auto' | 'off';
  /** Register the jail under this name (vjail ps, logs, kill, rm, checkpoint NAME). */
  name?: string;
  /** Start a supervisor in the background, its stdio to the jail's log, and return. */
  detach?: boolean;
  /** Set on that background supervisor: its stdio is the log. */
  supervise?: boolean;
  /** Accept checkpoint requests from the jail's own processes (docs/SELF-CHECKPOINT.md). */
  selfCheckpoint?: boolean;
  /** Bound of a detached jail's log (src/jails/log-size.ts), e.g. "10M". */
  logMaxSize?: string;
}

/** --emulate's comma-separated syscall names. */
export function emulateList(names: string | undefined): string[] | undefined {
  return names ? names.split(',').map((s) => s.trim()).filter(Boolean) : undefined;
}

/** The `vjail run` arguments for the background supervisor of a detached jail. */
function supervisorArgs(command: string[], flags: RunFlags): string[] {
  const args = ['run', '--name', flags.name!, '--supervise', '--profile', flags.profile];
  if (flags.policy) args.push('--policy', resolve(flags.policy));
  if (flags.trace === true) args.push('--trace');
  else if (flags.trace) args.push(`--trace=${resolve(flags.trace)}`);
  if (flags.stats) args.push('--stats');
  if (flags.pidNs) args.push('--pid-ns');
  if (flags.userNs) args.push('--user-ns');
  if (flags.emulate) args.push('--emulate', flags.emulate);
  if (flags.cpuBaseline) args.push('--cpu-baseline');
  if (flags.kernelFiles) args.push('--kernel-files', flags.kernelFiles);
  if (flags.receiver) args.push('--receiver', flags.receiver);
  if (flags.spin) args.push('--spin', flags.spin);
  if (flags.verbose) args.push('--verbose');
  if (flags.selfCheckpoint) args.push('--self-checkpoint');
  if (flags.logMaxSize) args.push('--log-max-size', flags.logMaxSize);
  return [...args, '--', ...command];
}

/** Signals vjail passes on to the jail's main process. SIGINT and SIGQUIT from a
 * terminal already reach it (it shares our foreground process group), so they
 * are forwarded only when stdin is not a terminal. */
const FORWARDED: NodeJS.Signals[] = ['SIGTERM', 'SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGINT', 'SIGQUIT'];

/** Is stdin a terminal? As tty.isatty(0), through tty_wrap where it can be (loading tty loads net). */
function stdinIsTTY(): boolean {
  return nodeBinding<{ isTTY(fd: number): boolean }>('tty_wrap')?.isTTY(0) ?? isatty(0);
}

function traceSink(trace: string | boolean | undefined): { write?: (line: string) => void; stream?: WriteStream } {
  if (!trace) return {};
  if (trace === true) return { write: (line) => process.stderr.write(`${line}\n`) };
  const stream = createWriteStream(trace, { flags: 'w' });
  return { write: (line) => stream.write(`${line}\n`), stream };
}

/** `--log-max-size` checked before anything starts: a size, and only with --detach. */
export async function logMaxSize(text: string | undefined, detached: boolean | undefined): Promise<number | undefined> {
  if (text === undefined) return undefined;
  if (!detached) throw new UsageError('--log-max-size bounds the log of a detached jail; add --name NAME --detach, or drop it');
  return (await import('../jails/log-size.js')).parseLogSize(text);
}

/**
 * In a detached jail's background supervisor with a bounded log: the pipe
 * the jail's output goes into, read into the log (our stdout) kept within
 * `bytes` (src/jails/log-pipe.ts).
 */
export async function ownLogPipe(name: string, bytes: number): Promise<import('../jails/log-pipe.js').LogPipe> {
  const { LogPipe } = await import('../jails/log-pipe.js');
  const { logPath } = await import('../jails/state.js');
  return LogPipe.open(1, logPath(name), bytes);
}

/** `vjail run`: start the command in a jail, wait for it, exit with its status. */
export async function runCommand(command: string[], flags: RunFlags): Promise<number> {
  if (command.length === 0) throw new UsageError('no command given; usage: vjail run [options] -- CMD [ARG...]');
  if (flags.policy) flags = { ...flags, policy: (await import('../policy/shipped.js')).policyPath(flags.policy) };
  if (flags.name && (flags.rootfs || flags.net === 'none' || flags.hostname)) {
    throw new UsageError('--rootfs, --net none and --hostname do not go with --name yet (a checkpoint of the jail could not restore its root and namespaces); drop --name');
  }
  if (flags.detach && !flags.name) throw new UsageError('--detach needs a name for the jail: add --name NAME');
  const logBound = await logMaxSize(flags.logMaxSize, flags.detach || flags.supervise);
  if (flags.detach) return (await import('../jails/supervise.js')).detach(flags.name!, supervisorArgs(command, flags));
  const sink = traceSink(flags.trace);
  const opts: JailOptions = {
    command,
    profile: flags.profile,
    policy: flags.policy,
    pidNs: flags.pidNs,
    rootfs: flags.rootfs,
    net: flags.net,
    hostname: flags.hostname,
    userNs: flags.userNs ? 'root' : undefined,
    kernelFiles: flags.kernelFiles,
    receiver: flags.receiver,
    spin: flags.spin === 'auto',
    emulate: emulateList(flags.emulate),
    trace: sink.write,
    env: flags.cpuBaseline ? baselineEnv(process.env) : undefined,
  };
  const self = flags.selfCheckpoint ? await selfCheckpoints() : undefined;
  if (self) opts.env = { ...(opts.env ?? process.env), [self.env]: self.server.address };
  // Named-jail bookkeeping (and its state validation) is loaded only for named jails.
  const named = flags.name
    ? (await import('../jails/supervise.js')).NamedJail.claim({
        name: flags.name,
        profile: flags.profile,
        policy: flags.policy ? resolve(flags.policy) : null,
        emulate: opts.emulate ?? [],
        pidNs: !!flags.pidNs,
        command,
        detached: !!flags.supervise,
      })
    : undefined;
  // Listen before the jail starts: the workload runs as soon as the supervisor
  // answers its handshake, and a signal sent to us then must not kill us.
  let jail: Jail | undefined;
  const early: NodeJS.Signals[] = [];
  const forward = (sig: NodeJS.Signals): void => {
    if (jail) jail.kill(sig);
    else early.push(sig);
  };
  const onTerminal = stdinIsTTY();
  const forwarded = FORWARDED.filter((s) => !(onTerminal && (s === 'SIGINT' || s === 'SIGQUIT')));
  for (const s of forwarded) process.on(s, forward);
  // The jail's output goes through a pipe we read only once it is claimed: a refused name leaves the log alone.
  const logPipe = named && flags.supervise && logBound ? await ownLogPipe(named.name, logBound) : undefined;
  if (logPipe) opts.stdio = ['inherit', logPipe.writeFd, logPipe.writeFd];
  try {
    jail = named ? await named.start((cgroup) => spawnJail({ ...opts, cgroup })) : spawnJail(opts);
  } catch (e) {
    for (const s of forwarded) process.off(s, forward);
    named?.abandon();
    throw e;
  } finally {
    logPipe?.closeWriteEnd();
  }
  for (const sig of early) jail.kill(sig);
  self?.server.serveJail(jail.pid, !!flags.supervise);
  named?.running(jail.pid);
  if (flags.verbose) for (const w of jail.warnings.filter((w) => !isPolicyWarning(w))) process.stderr.write(`vjail: warning: ${w}\n`);
  if (onTerminal) {
    // Keep vjail alive on a terminal ^C: the workload decides what it means.
    process.on('SIGINT', () => {});
    process.on('SIGQUIT', () => {});
  }
  const exit = await jail.exited;
  await logPipe?.drained();
  await self?.server.close();
  named?.ended(exit);
  for (const s of forwarded) process.off(s, forward);
  if (flags.stats) process.stderr.write(`${formatStats(jail.stats(), jail.receiverState())}\n`);
  if (sink.stream) await new Promise<void>((resolve) => sink.stream!.end(resolve));
  if (exit.execError) {
    process.stderr.write(`vjail: cannot run "${command[0]}": ${exit.execError === 'ENOENT' ? 'command not found' : exit.execError}\n`);
  }
  // Ended by a checkpoint it asked for with --exit: that is success.
  return self?.ended && exit.status === 128 + 9 ? 0 : exit.status;
}

/** The listener for checkpoint requests from inside the jail, loaded only when asked for. */
export async function selfCheckpoints(address?: string): Promise<{ server: import('../jails/self-checkpoint.js').SelfCheckpointServer; env: string; ended: boolean }> {
  const { SelfCheckpointServer, SELF_CHECKPOINT_ENV } = await import('../jails/self-checkpoint.js');
  const out = { server: undefined as unknown as import('../jails/self-checkpoint.js').SelfCheckpointServer, env: SELF_CHECKPOINT_ENV, ended: false };
  out.server = await SelfCheckpointServer.listen({ say: (line) => process.stderr.write(`vjail: ${line}\n`), ending: () => (out.ended = true) }, address);
  return out;
}
