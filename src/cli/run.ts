import { createWriteStream, type WriteStream } from 'node:fs';
import { spawnJail, type JailOptions } from '../jail.js';
import { formatStats } from '../supervisor/stats.js';
import { UsageError } from './errors.js';

export interface RunFlags {
  profile: string;
  policy?: string;
  trace?: string | boolean;
  stats?: boolean;
  pidNs?: boolean;
  emulate?: string;
  verbose?: boolean;
  kernelFiles?: 'auto' | 'mount' | 'shim';
}

/** Signals vjail passes on to the jail's main process. SIGINT and SIGQUIT from a
 * terminal already reach it (it shares our foreground process group), so they
 * are forwarded only when stdin is not a terminal. */
const FORWARDED: NodeJS.Signals[] = ['SIGTERM', 'SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGINT', 'SIGQUIT'];

function traceSink(trace: string | boolean | undefined): { write?: (line: string) => void; stream?: WriteStream } {
  if (!trace) return {};
  if (trace === true) return { write: (line) => process.stderr.write(`${line}\n`) };
  const stream = createWriteStream(trace, { flags: 'w' });
  return { write: (line) => stream.write(`${line}\n`), stream };
}

/** `vjail run`: start the command in a jail, wait for it, exit with its status. */
export async function runCommand(command: string[], flags: RunFlags): Promise<number> {
  if (command.length === 0) throw new UsageError('no command given; usage: vjail run [options] -- CMD [ARG...]');
  const sink = traceSink(flags.trace);
  const opts: JailOptions = {
    command,
    profile: flags.profile,
    policy: flags.policy,
    pidNs: flags.pidNs,
    kernelFiles: flags.kernelFiles,
    emulate: flags.emulate ? flags.emulate.split(',').map((s) => s.trim()).filter(Boolean) : undefined,
    trace: sink.write,
  };
  const jail = spawnJail(opts);
  if (flags.verbose) for (const w of jail.warnings) process.stderr.write(`vjail: warning: ${w}\n`);
  const forward = (sig: NodeJS.Signals): void => jail.kill(sig);
  const forwarded = FORWARDED.filter((s) => !(process.stdin.isTTY && (s === 'SIGINT' || s === 'SIGQUIT')));
  for (const s of forwarded) process.on(s, forward);
  if (process.stdin.isTTY) {
    // Keep vjail alive on a terminal ^C: the workload decides what it means.
    process.on('SIGINT', () => {});
    process.on('SIGQUIT', () => {});
  }
  const exit = await jail.exited;
  for (const s of forwarded) process.off(s, forward);
  if (flags.stats) process.stderr.write(`${formatStats(jail.stats())}\n`);
  if (sink.stream) await new Promise<void>((resolve) => sink.stream!.end(resolve));
  if (exit.execError) {
    process.stderr.write(`vjail: cannot run "${command[0]}": ${exit.execError === 'ENOENT' ? 'command not found' : exit.execError}\n`);
  }
  return exit.status;
}
