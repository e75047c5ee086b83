import { closeSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { resolve } from 'node:path';
import { emulateList } from '../cli/run.js';
import { killRemaining, removeJailCgroup, type JailCgroup } from '../cgroup.js';
import { isolationLayout } from '../isolation.js';
import { jailCapabilities, parseCapabilityState } from '../policy/capabilities.js';
import { policyPath } from '../policy/shipped.js';
import { isPolicyWarning, prepareJail, runCgroup } from '../jail.js';
import type { Plan } from '../plan/action.js';
import type { Profile } from '../profile/types.js';
import { formatStats } from '../supervisor/stats.js';
import { Supervisor } from '../supervisor/supervisor.js';
import { residentAddon } from './addon.js';
import { MSG, parseRequest, plannedMessage, type RunRequest } from './protocol.js';

/** How long the resident stays with no jail and no connection (VJAIL_RESIDENT_IDLE_MS overrides). */
export const DEFAULT_IDLE_MS = 60_000;

interface Prepared {
  profile: Profile;
  plan: Plan;
  /** The 'O' reply: filter, policy warnings, kernel-file binds. */
  message: Buffer;
  kernelDir?: string;
}

/**
 * Plans by request, for the resident's life: profile, plan and filter as
 * prepareJail makes them, and the profile's kernel files written once (read
 * only, mounted by each jail). A profile or policy file is known by its
 * path, inode, size and mtime, so an edited file is planned afresh.
 */
const plans = new Map<string, Prepared>();
const MAX_PLANS = 64;

function fileKey(path: string | undefined): string {
  if (!path || (!path.includes('/') && !path.endsWith('.json'))) return path ?? '';
  const abs = resolve(path);
  try {
    const st = statSync(abs);
    return `${abs}:${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch {
    return abs;
  }
}

function prepared(req: RunRequest): Prepared {
  const policy = req.policy === undefined ? undefined : policyPath(req.policy);
  // The front end's capabilities, not ours: the jail is its child.
  const capabilities = policy === undefined ? undefined : jailCapabilities(parseCapabilityState(req.capabilityState ?? ''));
  const key = JSON.stringify([fileKey(req.profile ?? 'host'), fileKey(policy), req.emulate ?? '', req.kernelFiles ?? 'auto', process.geteuid?.(), capabilities ?? null]);
  const hit = plans.get(key);
  if (hit) return hit;
  const { profile, plan, warnings, filter, kernelFiles } = prepareJail({
    profile: req.profile ?? 'host',
    policy,
    capabilities,
    emulate: emulateList(req.emulate),
    kernelFiles: req.kernelFiles,
  });
  const entry = { profile, plan, message: plannedMessage(filter, warnings.filter(isPolicyWarning), kernelFiles?.binds ?? []), kernelDir: kernelFiles?.dir };
  if (plans.size >= MAX_PLANS) plans.clear();
  plans.set(key, entry);
  if (entry.kernelDir) kernelDirs.push(entry.kernelDir);
  return entry;
}

/** Kernel-file directories written, removed when the resident leaves (a jail starting may be about to mount one). */
const kernelDirs: string[] = [];

function removeKernelFiles(): void {
  for (const dir of kernelDirs) rmSync(dir, { recursive: true, force: true });
}

/** One `vjail run` front end's connection: its plan, then its jail's supervisor until it hangs up. */
class Connection {
  private watch: object;
  private planned?: { plan: Plan; profile: Profile; receiver?: 'auto' | 'thread' | 'loop'; spin?: boolean; stats: boolean };
  private supervisor?: Supervisor;
  /** The jail's own cgroup (without --pid-ns): what is left in it when the front end goes is killed. */
  private cgroup?: JailCgroup;
  private closed = false;

  constructor(
    private readonly fd: number,
    private readonly onClose: () => void,
  ) {
    this.watch = residentAddon().fdWatch(fd, () => this.readable());
  }

  private send(data: Buffer): void {
    // The front end waits for each reply before sending more: the socket has room.
    if (residentAddon().sendFd(this.fd, data, -1) < 0) this.close();
  }

  private readable(): void {
    for (;;) {
      if (this.closed) return;
      const msg = residentAddon().residentRecv(this.fd);
      if (!msg) return;
      if (msg.data.length === 0) return this.close();
      const type = String.fromCharCode(msg.data[0]!);
      if (type === MSG.REQUEST) this.plan(msg.data.subarray(1));
      else if (type === MSG.LISTENER && msg.fd >= 0) this.supervise(msg.fd);
      else if (type === MSG.ENDED) this.ended();
      else {
        if (msg.fd >= 0) closeSync(msg.fd);
        this.close();
      }
    }
  }

  /** Plan as spawnJail does, in the front end's cwd (relative profile and policy paths). */
  private plan(body: Buffer): void {
    try {
      const req = parseRequest(body);
      process.chdir(req.cwd);
      const layout = isolationLayout(req, { cwd: req.cwd });
      const { profile, plan, message } = prepared(req);
      this.planned = { plan, profile, receiver: req.receiver, spin: req.spin === 'auto', stats: req.stats === true };
      // As spawnJail does: without a PID namespace, a cgroup is what still knows the jail's
      // processes once its reaper is gone (docs/SECURITY.md). vjail-init joins it ("C" record).
      if (!req.pidNs && req.rootfs === undefined && !this.cgroup) this.cgroup = runCgroup();
      const records = (this.cgroup ? `C${this.cgroup.path}\0` : '') + (layout ? `L${layout}\0` : '');
      this.send(records ? Buffer.concat([message, Buffer.from(records, 'utf8')]) : message);
    } catch (e) {
      // The Node CLI says what is wrong, exactly as it would have (the reason is shown with --stats).
      this.send(Buffer.from(`${MSG.FALLBACK}${oneLine(e)}`));
    } finally {
      process.chdir('/');
    }
  }

  private supervise(listenerFd: number): void {
    if (!this.planned || this.supervisor) {
      closeSync(listenerFd);
      return this.send(Buffer.from(`${MSG.FALLBACK}${this.supervisor ? 'a second listener for one jail' : 'a listener before a plan'}`));
    }
    try {
      this.supervisor = new Supervisor({
        listenerFd,
        plan: this.planned.plan,
        profile: this.planned.profile,
        receiver: this.planned.receiver,
        spin: this.planned.spin,
        warn: (line) => this.send(Buffer.from(`${MSG.WARNING}${line}`)),
      });
      this.supervisor.start();
    } catch (e) {
      this.supervisor = undefined;
      closeSync(listenerFd);
      return this.send(Buffer.from(`${MSG.FALLBACK}the supervisor did not start: ${oneLine(e)}`));
    }
    this.send(Buffer.from(MSG.SUPERVISING));
  }

  /** vjail-init has exited: end what is left of the jail, then let the front end return. */
  private ended(): void {
    if (this.planned?.stats && this.supervisor) {
      const table = formatStats(this.supervisor.stats(), this.supervisor.state());
      this.send(Buffer.from(`${MSG.STATS}${table}\nserved by the resident supervisor (pid ${process.pid})`));
    }
    if (this.cgroup) {
      if (!killRemaining(this.cgroup)) this.send(Buffer.from(`${MSG.WARNING}processes of the jail are still in ${this.cgroup.path} 5 s after SIGKILL`));
      removeJailCgroup(this.cgroup);
      this.cgroup = undefined;
    }
    this.send(Buffer.from(MSG.KILLED));
  }

  /** The front end has gone: its vjail-init has exited (or the front end was killed, and vjail-init ends the jail). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    residentAddon().fdUnwatch(this.watch);
    this.supervisor?.stop();
    if (this.cgroup) {
      // The front end, which would say so, is gone: a cgroup still busy after the bounded kill is
      // left in place (removeJailCgroup keeps it) for the next resident's stale-cgroup sweep.
      killRemaining(this.cgroup);
      removeJailCgroup(this.cgroup);
    }
    closeSync(this.fd);
    this.onClose();
  }
}

/**
 * Serve `vjail run` front ends at socketPath until idle for idleMs. Returns
 * false when another live resident already serves there.
 */
export function serve(socketPath: string, idleMs: number): boolean {
  const addon = residentAddon();
  // Hold no directory of the user's: plans chdir to each request's cwd and back here.
  process.chdir('/');
  const lfd = addon.residentListen(socketPath);
  if (lfd < 0) return false;
  const ino = statSync(socketPath).ino;
  let open = 0;
  let idle: NodeJS.Timeout | undefined;
  const quit = (): void => {
    addon.fdUnwatch(listenWatch);
    closeSync(lfd);
    try {
      // Only our own socket: a resident started after a stale-socket cleanup may own the path now.
      if (statSync(socketPath).ino === ino) unlinkSync(socketPath);
    } catch {
      // already gone
    }
    removeKernelFiles();
    process.exit(0);
  };
  const armIdle = (): void => {
    if (open === 0) idle = setTimeout(quit, idleMs);
  };
  const listenWatch = addon.fdWatch(lfd, () => {
    for (let fd = addon.residentAccept(lfd); fd >= 0; fd = addon.residentAccept(lfd)) {
      clearTimeout(idle);
      open++;
      new Connection(fd, () => {
        open--;
        armIdle();
      });
    }
  });
  armIdle();
  return true;
}

/** An error as one line, for the front end's --stats note on why the resident did not serve a jail. */
function oneLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0]!.slice(0, 500);
}
