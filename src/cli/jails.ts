/** vjail ps, logs, kill, rm: named jails (src/jails/). */
import { existsSync, writeSync } from 'node:fs';
import { constants } from 'node:os';
import type { Command } from 'commander';
import { removeJailCgroup } from '../cgroup.js';
import { jailMembers, signalJail } from '../jails/members.js';
import { copyLogFrom } from '../jails/log-size.js';
import { liveness, listStates, logPath, removeJailDir, requireState, workloadAlive, type JailState } from '../jails/state.js';
import { UsageError } from './errors.js';

/** What `ps` says of a jail: never `running` when no process of it is alive. */
function stateOf(s: JailState, processes: number): string {
  const l = liveness(s);
  if (l === 'exited') return `exited (${s.exit?.status ?? '?'})`;
  if (l === 'running' && processes === 0) return 'ending';
  return l;
}

interface PsRow {
  state: JailState;
  processes: number;
}

/** The lines of `vjail ps`. */
export function psLines(jails: PsRow[]): string[] {
  const rows = jails.map(({ state: s, processes }) => [
    s.name, s.pid === null ? '-' : String(s.pid), s.profile, stateOf(s, processes), String(processes), s.started.replace(/\.\d+Z$/, 'Z'), s.command.join(' '),
  ]);
  const head = ['NAME', 'PID', 'PROFILE', 'STATE', 'PROCS', 'STARTED', 'COMMAND'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [head, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '));
}

function psCommand(flags: { json?: boolean }): number {
  const jails = listStates().map((state) => ({ state, processes: jailMembers(state).pids.length }));
  if (flags.json) {
    const out = jails.map(({ state: s, processes }) => ({ ...s, state: stateOf(s, processes).replace(/ .*/, ''), processes }));
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } else {
    process.stdout.write(`${psLines(jails).join('\n')}\n`);
  }
  return 0;
}

/**
 * Write all of `data` to stdout before going on: a log is larger than a pipe
 * holds, and a buffered write would be cut short when the command exits.
 */
function writeOut(data: Buffer): void {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let done = 0; done < data.length; ) {
    try {
      done += writeSync(1, data, done, data.length - done);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EPIPE') process.exit(0); // the reader is gone (| head): nothing more to print
      if (code !== 'EAGAIN') throw e;
      Atomics.wait(pause, 0, 0, 5); // stdout is non-blocking and full: let the reader catch up
    }
  }
}

async function logsCommand(name: string, flags: { follow?: boolean }): Promise<number> {
  const s = requireState(name);
  const path = logPath(s.name);
  if (!s.detached || !existsSync(path)) {
    throw new UsageError(`jail "${name}" has no log: only a jail started with --detach has one (the output of others goes to their terminal)`);
  }
  // A bounded log (--log-max-size) keeps its older part in log.1 and its live part from log.start on.
  let offset = copyLogFrom(path, 0, writeOut);
  if (!flags.follow) return 0;
  for (;;) {
    const live = liveness(requireState(name));
    offset = copyLogFrom(path, offset, writeOut);
    if (live !== 'running' && live !== 'starting') return 0;
    await new Promise((r) => setTimeout(r, 100));
  }
}

function signalNumber(sig: string): number {
  if (/^\d+$/.test(sig) && Number(sig) > 0 && Number(sig) < 65) return Number(sig);
  const name = (sig.toUpperCase().startsWith('SIG') ? sig.toUpperCase() : `SIG${sig.toUpperCase()}`) as NodeJS.Signals;
  const n = constants.signals[name];
  if (n === undefined) throw new UsageError(`unknown signal "${sig}": give a name such as TERM, KILL or HUP, or a number`);
  return n;
}

function killCommand(name: string, flags: { signal: string; main?: boolean }): number {
  const sig = signalNumber(flags.signal);
  const s = requireState(name);
  const live = liveness(s);
  if (live === 'exited') throw new UsageError(`jail "${name}" has already exited (status ${s.exit?.status ?? '?'}); remove it with "vjail rm ${name}"`);
  if (live === 'gone') throw new UsageError(`the supervisor of jail "${name}" died, and the jail with it; remove it with "vjail rm ${name}"`);
  if (flags.main) {
    if (!workloadAlive(s)) {
      const others = jailMembers(s).pids.length;
      throw new UsageError(`the main process of jail "${name}"${s.pid === null ? '' : ` (pid ${s.pid})`} has exited${others ? `; ${others} other process(es) run on: drop --main to signal them` : ''}`);
    }
    process.kill(s.pid!, sig);
    return 0;
  }
  if (signalJail(s, sig) > 0) return 0;
  if (workloadAlive(s)) {
    process.kill(s.pid!, sig); // not found by its identity (a jail started by an older vjail)
    return 0;
  }
  throw new UsageError(`jail "${name}" has no live process left to signal; its supervisor (pid ${s.supervisorPid}) is ending it`);
}

function rmCommand(name: string): number {
  const s = requireState(name);
  const live = liveness(s);
  if (live === 'running' || live === 'starting') {
    throw new UsageError(`jail "${name}" is running; stop it first with "vjail kill ${name}"`);
  }
  if (s.cgroup) removeJailCgroup(s.cgroup);
  removeJailDir(s.name);
  return 0;
}

export function registerJailCommands(cli: Command, setExit: (code: number) => void): void {
  cli
    .command('ps')
    .description('list named jails: name, pid, profile, state (starting, running, ending, exited, gone), live processes, start time, command')
    .option('--json', 'print the recorded state of each')
    .action((flags: { json?: boolean }) => setExit(psCommand(flags)));
  cli
    .command('logs')
    .description('print the output of a jail started with --detach')
    .argument('<name>')
    .option('-f, --follow', 'keep printing what it writes until it ends')
    .action(async (name: string, flags: { follow?: boolean }) => setExit(await logsCommand(name, flags)));
  cli
    .command('kill')
    .description('send a signal to every process of a named jail')
    .argument('<name>')
    .option('-s, --signal <sig>', 'signal name or number', 'TERM')
    .option('--main', "signal only the jail's main (first) process")
    .action((name: string, flags: { signal: string; main?: boolean }) => setExit(killCommand(name, flags)));
  cli
    .command('rm')
    .description('forget a jail that has exited (its state and log)')
    .argument('<name>')
    .action((name: string) => setExit(rmCommand(name)));
}
