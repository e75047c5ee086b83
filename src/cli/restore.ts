import { fstatSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { restore } from '../checkpoint/restore.js';
import { openImage } from '../image/format.js';
import type { Jail } from '../jail.js';
import { detach, NamedJail } from '../jails/supervise.js';
import { asUserError } from './checkpoint.js';
import { selfCheckpoints } from './run.js';
import { UsageError } from './errors.js';

export interface RestoreFlags {
  /** Register the restored jail under this name. */
  name?: string;
  /** Restore in a background supervisor, its stdio to the jail's (fresh) log. */
  detach?: boolean;
  /** Set on that background supervisor. */
  supervise?: boolean;
  /** Restore on a CPU lacking instruction-set extensions the image may use. */
  force?: boolean;
  /** Report each restore step on stderr. */
  verbose?: boolean;
  /** `FD:KEY`: our descriptor FD stands in for the image's external description KEY. */
  inheritFd?: string[];
}

/** `--inherit-fd FD:KEY` values: each FD must be open here. */
function inheritMap(values: string[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const v of values) {
    const m = /^(\d+):(.+)$/.exec(v);
    if (!m) throw new UsageError(`--inherit-fd takes FD:KEY (for example 1:pipe:[12345], the key "vjail inspect" shows), not "${v}"`);
    const fd = Number(m[1]);
    try {
      fstatSync(fd);
    } catch {
      throw new UsageError(`--inherit-fd ${v}: descriptor ${fd} is not open in this shell; open it (e.g. "${fd}>file") or pick another`);
    }
    out.set(m[2]!, fd);
  }
  return out;
}

/** The restored program's command line (its argv area is back in place), else a description. */
function commandOf(pid: number, dir: string): string[] {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
    if (argv.length > 0) return argv;
  } catch {
    // gone
  }
  return [`(restored from ${dir})`];
}

/** `vjail restore DIR`: bring the process back in a new jail and wait for it, like `vjail run`. */
export async function restoreCommand(dir: string, flags: RestoreFlags = {}): Promise<number> {
  if (flags.detach && !flags.name) throw new UsageError('--detach needs a name for the restored jail: add --name NAME');
  if (flags.detach && flags.inheritFd?.length) throw new UsageError('--inherit-fd cannot be combined with --detach yet (the background supervisor does not receive your descriptors); restore in the foreground');
  const inherit = inheritMap(flags.inheritFd ?? []);
  if (flags.detach) return detach(flags.name!, ['restore', resolve(dir), '--name', flags.name!, '--supervise', ...(flags.force ? ['--force'] : [])]);
  const named = flags.name
    ? NamedJail.claim({ name: flags.name, profile: 'host', policy: null, emulate: [], pidNs: false, command: [], detached: !!flags.supervise, restoredFrom: resolve(dir) })
    : undefined;
  let jail: Jail;
  let self: Awaited<ReturnType<typeof listenAsBefore>>;
  try {
    const report = flags.verbose ? (step: string, detail: string) => process.stderr.write(`vjail: restore ${step}: ${detail}\n`) : undefined;
    // Listen for the restored jail's checkpoint requests before any of its processes runs.
    const beforeResume = async (pid: number): Promise<void> => void (self = await listenAsBefore(pid));
    const opts = { image: dir, force: flags.force, report, inherit, beforeResume };
    jail = named ? await named.start((cgroup) => restore({ ...opts, cgroup })) : await restore(opts);
  } catch (e) {
    void self?.server.close();
    named?.abandon();
    throw asUserError(e, 'restore');
  }
  if (named) {
    // restore() verified every page file already; only the manifest is wanted here.
    const { profile, policy, emulate } = openImage(dir, { verifyPages: false }).manifest;
    named.running(jail.pid, { command: commandOf(jail.pid, dir), profile, policy: policy ?? null, emulate });
  }
  const forward = (sig: NodeJS.Signals): void => jail.kill(sig);
  const forwarded: NodeJS.Signals[] = ['SIGTERM', 'SIGHUP', 'SIGUSR1', 'SIGUSR2'];
  for (const s of forwarded) process.on(s, forward);
  const exit = await jail.exited;
  await self?.server.close();
  named?.ended(exit);
  for (const s of forwarded) process.off(s, forward);
  return self?.ended && exit.status === 128 + 9 ? 0 : exit.status;
}

/**
 * A jail run with --self-checkpoint has the listener's name in its
 * environment, restored with its memory: listen there again, if it is free
 * (with --leave-running the original jail's supervisor may still hold it).
 */
async function listenAsBefore(pid: number): Promise<Awaited<ReturnType<typeof selfCheckpoints>> | undefined> {
  const { addressIn } = await import('../jails/self-checkpoint.js');
  const address = addressIn(pid);
  if (!address) return undefined;
  try {
    const self = await selfCheckpoints(address);
    self.server.serveJail(pid);
    return self;
  } catch {
    process.stderr.write(`vjail: warning: checkpoint requests from inside the restored jail go to ${address}, still held by another supervisor (the original jail's?), which refuses them\n`);
    return undefined;
  }
}
