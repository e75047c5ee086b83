/**
 * Named jails: one directory per name under the state directory, holding
 * `state.json` (written atomically: temp file + rename) and, for a detached
 * jail, `log` (its stdio). The supervisor (the `vjail run` or `vjail restore`
 * process that owns the jail) keeps the state current; anyone may read it.
 *
 * State directory: $VJAIL_STATE_DIR, else $XDG_RUNTIME_DIR/vjail, else
 * /run/vjail as root, else ~/.local/state/vjail.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { UsageError } from '../cli/errors.js';
import { sleepSync } from '../sleep-sync.js';

export const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

const stateSchema = z.object({
  name: z.string(),
  supervisorPid: z.number().int(),
  /** Start time of the supervisor (clock ticks after boot, /proc/PID/stat field 22): tells a reused pid apart. */
  supervisorStart: z.number(),
  /** The workload's pid (in the supervisor's PID namespace); null until started. */
  pid: z.number().int().nullable(),
  pidStart: z.number().nullable(),
  profile: z.string(),
  policy: z.string().nullable(),
  emulate: z.array(z.string()),
  pidNs: z.boolean(),
  command: z.array(z.string()),
  /** ISO time the jail was started. */
  started: z.string(),
  detached: z.boolean(),
  /** The jail's own cgroup, when it has one (for the freezer). */
  cgroup: z.object({ kind: z.enum(['v2', 'v1']), path: z.string() }).nullable(),
  /** Set for a jail brought back by `vjail restore`: the image. */
  restoredFrom: z.string().nullable(),
  status: z.enum(['starting', 'running', 'exited']),
  exit: z
    .object({ status: z.number().int(), code: z.number().int().nullable(), signal: z.string().nullable(), execError: z.string().optional() })
    .nullable(),
  ended: z.string().nullable(),
});

export type JailState = z.infer<typeof stateSchema>;

/** What `ps` says of a jail: its status, unless the supervisor died without recording an end. */
export type Liveness = 'starting' | 'running' | 'exited' | 'gone';

export function stateDir(): string {
  const env = process.env;
  if (env.VJAIL_STATE_DIR) return env.VJAIL_STATE_DIR;
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'vjail');
  if (process.geteuid?.() === 0) return '/run/vjail';
  return join(homedir(), '.local', 'state', 'vjail');
}

export function checkName(name: string): string {
  if (!NAME_PATTERN.test(name) || name.length > 200) {
    throw new UsageError(`invalid jail name "${name}": use letters, digits, "_", "." and "-", starting with a letter or digit`);
  }
  return name;
}

export function jailDir(name: string): string {
  return join(stateDir(), checkName(name));
}

export const logPath = (name: string): string => join(jailDir(name), 'log');
const statePath = (name: string): string => join(jailDir(name), 'state.json');

/** Write a file by temp + fsync + rename, so readers see the old or the new content whole (`sync: false`: whole, not durable). */
export function writeAtomic(path: string, data: string, opts: { sync?: boolean } = {}): void {
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o644);
  try {
    writeSync(fd, data);
    if (opts.sync ?? true) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

export function writeState(state: JailState): void {
  mkdirSync(jailDir(state.name), { recursive: true });
  // Renamed into place, it is whole whenever read. Synced only once it records an end: a jail
  // starting or running does not outlive a crash of the machine, its record of how it ended does.
  writeAtomic(statePath(state.name), `${JSON.stringify(state, null, 2)}\n`, { sync: state.status === 'exited' });
}

/** The jail's recorded state, or undefined if there is no such jail (or its file is unreadable). */
export function readState(name: string): JailState | undefined {
  let text: string;
  try {
    text = readFileSync(statePath(name), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const r = stateSchema.safeParse(JSON.parse(text));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

/** The state of a jail that must exist: else a usage error naming the fix. */
export function requireState(name: string): JailState {
  const s = readState(checkName(name));
  if (!s) throw new UsageError(`no jail named "${name}"; "vjail ps" lists them`);
  return s;
}

export function listStates(): JailState[] {
  let names: string[];
  try {
    names = readdirSync(stateDir());
  } catch {
    return [];
  }
  return names
    .filter((n) => NAME_PATTERN.test(n))
    .map((n) => readState(n))
    .filter((s): s is JailState => s !== undefined)
    .sort((a, b) => a.started.localeCompare(b.started));
}

/** Start time of a process (/proc/PID/stat field 22), or undefined if it is gone or a zombie. */
export function processStart(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (f[0] === 'Z' || f[0] === 'X') return undefined;
    return Number(f[19]);
  } catch {
    return undefined;
  }
}

export function supervisorAlive(s: JailState): boolean {
  return processStart(s.supervisorPid) === s.supervisorStart;
}

export function liveness(s: JailState): Liveness {
  if (s.status === 'exited') return 'exited';
  return supervisorAlive(s) ? s.status : 'gone';
}

/** Is the workload still the process the state names? */
export function workloadAlive(s: JailState): boolean {
  return s.pid !== null && s.pidStart !== null && processStart(s.pid) === s.pidStart;
}

/**
 * Take the name for a new jail supervised by this process: refused while
 * another live supervisor holds it; an exited or gone jail of that name is
 * replaced. A lock file makes the check and the write one step.
 */
export function claimName(state: JailState): void {
  const dir = jailDir(state.name);
  mkdirSync(dir, { recursive: true });
  const lock = join(dir, 'lock');
  for (let attempt = 0; ; attempt++) {
    try {
      closeSync(openSync(lock, 'wx'));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 200) throw e;
      // Another claim is under way; a lock older than a few seconds is left from a crash.
      try {
        const age = Date.now() - statSync(lock).mtimeMs;
        if (age > 5000) unlinkSync(lock);
      } catch {
        // gone meanwhile
      }
      sleepSync(10);
    }
  }
  try {
    const old = readState(state.name);
    if (old && old.supervisorPid !== process.pid && (old.status === 'running' || old.status === 'starting') && supervisorAlive(old)) {
      throw nameTaken(old);
    }
    writeState(state);
  } finally {
    unlinkSync(lock);
  }
}

/** The error for a name a live jail holds. */
export function nameTaken(old: JailState): UsageError {
  return new UsageError(`a jail named "${old.name}" is already running (supervisor pid ${old.supervisorPid}); choose another --name, or stop it with "vjail kill ${old.name}"`);
}

/** Remove an ended jail's directory (state and log). */
export function removeJailDir(name: string): void {
  rmSync(jailDir(name), { recursive: true, force: true });
}
