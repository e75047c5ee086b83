/**
 * The supervisor's side of a named jail: take the name, give the jail a
 * cgroup of its own, record it as running once started and its exit once
 * ended; and `detach`, which starts such a supervisor in the background.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import type { Duplex } from 'node:stream';
import { constants } from 'node:os';
import { closeSync, constants as fsConstants, existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { UsageError } from '../cli/errors.js';
import { createJailCgroup, removeJailCgroup, type JailCgroup } from '../cgroup.js';
import type { JailExit } from '../jail.js';
import { LaunchError } from '../launch.js';
import { dataPath } from '../paths.js';
import { tryLock } from './lock.js';
import { StepTimer } from '../timings.js';
import { checkName, claimName, jailDir, liveness, logPath, nameTaken, processStart, readState, removeJailDir, writeState, type JailState } from './state.js';

export interface NamedJailInfo {
  name: string;
  profile: string;
  policy: string | null;
  emulate: string[];
  pidNs: boolean;
  command: string[];
  /** Its stdio is the jail's log (a supervisor started by `detach`). */
  detached: boolean;
  restoredFrom?: string;
}

export class NamedJail {
  private state: JailState;
  cgroup: JailCgroup | undefined;

  private constructor(state: JailState) {
    this.state = state;
  }

  /** Take the name (a usage error while a live jail holds it) and make the jail's cgroup. */
  static claim(info: NamedJailInfo): NamedJail {
    checkName(info.name);
    const state: JailState = {
      name: info.name,
      supervisorPid: process.pid,
      supervisorStart: processStart(process.pid) ?? 0,
      pid: null,
      pidStart: null,
      profile: info.profile,
      policy: info.policy,
      emulate: info.emulate,
      pidNs: info.pidNs,
      command: info.command,
      started: new Date().toISOString(),
      detached: info.detached,
      cgroup: null,
      restoredFrom: info.restoredFrom ?? null,
      status: 'starting',
      exit: null,
      ended: null,
    };
    claimName(state);
    const named = new NamedJail(state);
    named.cgroup = createJailCgroup(info.name);
    named.update({ cgroup: named.cgroup ?? null });
    return named;
  }

  get name(): string {
    return this.state.name;
  }

  private update(change: Partial<JailState>): void {
    this.state = { ...this.state, ...change };
    writeState(this.state);
  }

  /**
   * Start the jail in its cgroup. Where the cgroup cannot be joined (a host
   * that lets us make it but not move into it), start it without one.
   */
  async start<T>(startJail: (cgroup: string | undefined) => T | Promise<T>): Promise<T> {
    try {
      return await startJail(this.cgroup?.path);
    } catch (e) {
      if (!(this.cgroup && e instanceof LaunchError && /joining the cgroup/.test(e.message))) throw e;
      removeJailCgroup(this.cgroup);
      this.cgroup = undefined;
      this.update({ cgroup: null });
      return startJail(undefined);
    }
  }

  /** The workload runs: record it (what `detach` waits for), with what is known only now (a restored jail's). */
  running(pid: number, known: Partial<Pick<JailState, 'command' | 'profile' | 'policy' | 'emulate' | 'pidNs' | 'restoredFrom'>> = {}): void {
    this.update({ ...known, status: 'running', pid, pidStart: processStart(pid) ?? null });
  }

  ended(exit: JailExit): void {
    if (this.cgroup) removeJailCgroup(this.cgroup);
    const { status, code, signal, execError } = exit;
    this.update({ status: 'exited', exit: { status, code, signal, ...(execError ? { execError } : {}) }, ended: new Date().toISOString() });
  }

  /** The jail could not be started: give the name back. */
  abandon(): void {
    if (this.cgroup) removeJailCgroup(this.cgroup);
    if (this.state.detached) rmSync(`${jailDir(this.name)}/state.json`, { force: true });
    else removeJailDir(this.name);
  }
}

/** Refuse a name a live jail holds, before anything is started. */
export function checkNameFree(name: string): void {
  const old = readState(checkName(name));
  if (old && (liveness(old) === 'running' || liveness(old) === 'starting')) {
    throw nameTaken(old);
  }
}

/**
 * `--detach`: start `vjail ARGS` (which must name the jail and pass
 * --supervise) in a session of its own with its stdio going to the jail's
 * log, wait until it records the jail as running, and leave it there.
 * Returns the exit status for the CLI: 0, or the supervisor's own when it
 * failed to start the jail (its message is passed on). Two starts under
 * one name never overlap: the second fails at once, before it touches the
 * first one's log. `output` is what to print once the jail runs (default:
 * its name); `failed`, what to print on stdout besides the error line.
 */
/** How `detach` ends: what it would print on stdout and stderr (by default it does). */
export interface DetachPrint {
  out(text: string): void;
  err(text: string): void;
}

export interface DetachOptions {
  timeoutMs?: number;
  output?: () => string;
  failed?: (error: string) => string;
  print?: DetachPrint;
}

export async function detach(name: string, args: string[], opts: DetachOptions = {}): Promise<number> {
  checkName(name);
  const lock = tryLock(`start.${name}`);
  if ('heldBy' in lock) {
    throw new UsageError(`jail "${name}" is being started by another vjail${lock.heldBy ? ` (process ${lock.heldBy})` : ''}; choose another --name, or see "vjail ps"`);
  }
  try {
    return await detachLocked(name, args, opts);
  } finally {
    lock.release();
  }
}

async function detachLocked(name: string, args: string[], opts: DetachOptions): Promise<number> {
  checkNameFree(name);
  return untilRunning(name, spawnSupervisor(name, args, false), opts);
}

/** A background supervisor, started: its stdio the jail's fresh log; with `pipe`, its fd 3 a pipe from us. */
interface Supervisor {
  child: ChildProcess;
  /** Its exit status once it ends. */
  exited: Promise<number>;
}

function spawnSupervisor(name: string, args: string[], pipe: boolean): Supervisor {
  mkdirSync(jailDir(name), { recursive: true });
  // Appending: a bounded log (log-size.ts) is truncated under the jail's writes, which must then start again at 0.
  const log = openSync(logPath(name), fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC | fsConstants.O_APPEND, 0o644);
  const timer = new StepTimer('detach');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [dataPath('bin', 'vjail.js'), ...args], { detached: true, stdio: ['ignore', log, log, ...(pipe ? ['pipe' as const] : [])] });
  } finally {
    closeSync(log);
  }
  timer.lap('spawn');
  const exited = new Promise<number>((resolve) => child.on('exit', (code, signal) => resolve(code ?? 128 + (signal ? constants.signals[signal] : 0))));
  return { child, exited };
}

/** How long a prestarted supervisor's answer may follow its state's "running" before the result file is read instead. */
const ANSWER_AFTER_STATE_MS = 1000;

/**
 * Wait (bounded) until the supervisor records the jail as running, or ends
 * without; say which. `answered`: the supervisor's result line on its fd 3
 * (a prestarted one writes it once its state says running), which ends the
 * wait at once and is printed instead of `opts.output`; null if none comes.
 */
async function untilRunning(name: string, { child, exited }: Supervisor, opts: DetachOptions, answered?: Promise<string | null>): Promise<number> {
  const print = opts.print ?? { out: (t: string) => void process.stdout.write(t), err: (t: string) => void process.stderr.write(t) };
  const timer = new StepTimer('detach');
  let childExit: number | undefined;
  void exited.then((c) => (childExit = c));
  const deadline = Date.now() + (opts.timeoutMs ?? 300_000);
  let answer: string | null = null;
  let settled = !answered;
  void answered?.then((line) => {
    answer = line;
    settled = true;
  });
  for (;;) {
    const s = readState(name);
    if (s && s.supervisorPid === child.pid && s.status !== 'starting') break;
    if (childExit !== undefined) {
      const status = childExit;
      const text = existsSync(logPath(name)) ? readFileSync(logPath(name), 'utf8') : '';
      const line = text.split('\n').filter((l) => l.startsWith('vjail: ')).pop();
      if (readState(name)?.supervisorPid === child.pid || !readState(name)) removeJailDir(name);
      const error = line ? line.replace(/^vjail: /, '') : `the supervisor of jail "${name}" ended (status ${status}) before the jail started`;
      if (opts.failed) print.out(opts.failed(error));
      print.err(`vjail: ${error}\n`);
      return status === 0 ? 1 : status;
    }
    if (Date.now() > deadline) {
      child.kill('SIGTERM');
      throw new UsageError(`jail "${name}" did not start within ${(opts.timeoutMs ?? 300_000) / 1000} s; see "vjail logs ${name}"`);
    }
    // The state is polled; a prestarted supervisor's answer on its fd 3 cuts the wait short.
    let tick: NodeJS.Timeout | undefined;
    await Promise.race([new Promise((r) => (tick = setTimeout(r, 10))), ...(settled ? [] : [answered!])]);
    clearTimeout(tick);
  }
  timer.lap('until the supervisor says the jail runs');
  // Its answer follows the state at once (or the pipe closes): taken rather than read from the result file.
  if (!settled) {
    let tick: NodeJS.Timeout | undefined;
    await Promise.race([answered!, new Promise((r) => (tick = setTimeout(r, ANSWER_AFTER_STATE_MS)))]);
    clearTimeout(tick);
  }
  child.unref();
  print.out(answer !== null ? `${answer}\n` : opts.output ? opts.output() : `${name}\n`);
  return 0;
}

/** How long a pre-started supervisor is given to end once told that no image comes, before it is killed. */
const PRESTART_END_MS = 10_000;

/** A supervisor started before its image is there (see `prestart`). */
export interface Prestarted {
  /** Hand it the image directory and wait, as `detach` does, until the jail runs there or the supervisor says why not. */
  go(dir: string, opts?: DetachOptions): Promise<number>;
  /** No image comes: end it (bounded) and leave nothing of it; the name is free again. */
  cancel(): Promise<void>;
}

/** The first line `from` sends (without its newline), or null if it ends, fails or closes first. */
function firstLine(from: Duplex): Promise<string | null> {
  return new Promise((resolve) => {
    let text = '';
    from.setEncoding('utf8');
    from.on('data', (d: string) => {
      text += d;
      const nl = text.indexOf('\n');
      if (nl >= 0) resolve(text.slice(0, nl));
    });
    for (const end of ['end', 'close', 'error']) from.on(end, () => resolve(null));
  });
}

/**
 * Start the background supervisor of `vjail ARGS` (which must pass
 * --supervise and --image-from-fd 3) before its image is there: it loads
 * what it can and waits for the image directory's path on its fd 3, a pipe
 * from here. The name is taken for a start from now until `go` has ended
 * or `cancel` (exactly one of them, once).
 */
export function prestart(name: string, args: string[]): Prestarted {
  checkName(name);
  const lock = tryLock(`start.${name}`);
  if ('heldBy' in lock) {
    throw new UsageError(`jail "${name}" is being started by another vjail${lock.heldBy ? ` (process ${lock.heldBy})` : ''}; choose another --name, or see "vjail ps"`);
  }
  let sup: Supervisor;
  try {
    checkNameFree(name);
    sup = spawnSupervisor(name, args, true);
  } catch (e) {
    lock.release();
    throw e;
  }
  // A socket pair: the image's path goes down it, the supervisor's result line comes back.
  const pipe = sup.child.stdio[3] as Duplex;
  pipe.on('error', () => {}); // a supervisor that ended says why in its log (untilRunning)
  const answered = firstLine(pipe);
  return {
    go: async (dir, opts = {}) => {
      try {
        pipe.end(`${dir}\n`);
        return await untilRunning(name, sup, opts, answered);
      } finally {
        lock.release();
      }
    },
    cancel: async () => {
      try {
        pipe.destroy(); // the supervisor reads the end of its fd 3 and ends, having started nothing
        let timer: NodeJS.Timeout | undefined;
        const ended = await Promise.race([sup.exited, new Promise<null>((r) => (timer = setTimeout(r, PRESTART_END_MS, null)))]);
        clearTimeout(timer); // the page server runs on: no 10 s timer left behind each cancelled migration
        if (ended === null) {
          sup.child.kill('SIGKILL');
          await sup.exited;
        }
        if (readState(name)?.supervisorPid === sup.child.pid || !readState(name)) removeJailDir(name);
      } finally {
        lock.release();
      }
    },
  };
}
