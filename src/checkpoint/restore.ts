/**
 * Restore the processes of an image. The image is checked before anything
 * is started, all but the page files' contents, which are hashed as they
 * are loaded: a mismatch stops the restore before any process is let go,
 * and everything started is killed. Then the restorer (native/restorer) is started
 * as an ordinary jail workload, in a new PID namespace if the image has one:
 * vjail-init installs the seccomp filter of the image's profile, re-derived
 * for this host, and a new supervisor answers on its listener. The restorer
 * then only waits; this module drives it with ptrace, one restorer per kind
 * of kernel object (parts/*.ts):
 *
 *   tree     the restorer is the first process (PID 2); every other process
 *            is forked from its parent by clone3 with set_tid, so each is a
 *            copy of the restorer under the same filter; sessions, groups,
 *            then zombies exit with their status
 *   process  each live process replaces its memory with the image's, then
 *            task state, open files, signals, and its threads (clone3 with set_tid)
 *   resume   every thread gets its mask and registers, and all are let go
 *
 * System calls we inject pass through the filter exactly as the program's
 * own would.
 */
import { closeSync } from 'node:fs';
import type { Jail, JailOptions } from '../jail.js';
import { type PolicyChoice, policyInForce } from './restore-policy.js';
import { openImage, type OpenedImage, PAGE_SIZE, type ThreadImage } from '../image/format.js';
import { clockOffsets, describeOffsets } from './parts/clocks.js';
import { placeFds, prepareFds } from './parts/fds/index.js';
import { restoreMemory } from './parts/memory.js';
import { LazyPages, type LazyStats } from './parts/lazy.js';
import { checkObjects, stageObjects } from './parts/shmem.js';
import { removeSysvSegments, restoreSysvIpc } from './parts/sysvipc.js';
import { restoreSignals } from './parts/signals.js';
import { restoreAdvice } from './parts/advice.js';
import { checkCwd, restorePrctl, restoreTask } from './parts/task.js';
import { capNames } from './parts/creds.js';
import { loadThread, restoreThread, restoreThreadState } from './parts/threads.js';
import { restoreTimers } from './parts/timers.js';
import { userNamespaceToRestore } from './parts/userns.js';
import { ImageError } from '../image/errors.js';
import { type IdView } from '../userns.js';
import { cloneTask, createTree, endZombies } from './parts/tree.js';
import { preflight } from './preflight.js';
import { Tracee } from './tracee.js';
import { SYS } from './syscalls.js';
import { StepTimer } from '../timings.js';
import { type PrelaunchedRestorer, type RestorerLaunch, restorerPath, seizeRestorer, spawnRestorer } from './restorer-launch.js';

export { restorerPath };

export interface RestoreOptions {
  /** Told the image once it is opened and checked (its manifest, for a caller that wants it too: no second read). */
  opened?: (image: OpenedImage) => void;
  image: string;
  stdio?: JailOptions['stdio'];
  /** A cgroup the new jail joins (a named jail's own). */
  cgroup?: string;
  /** Restore even on a CPU that lacks instruction-set extensions the image's processes may use. */
  force?: boolean;
  /**
   * Descriptors of ours to stand in for what the image could not hold (an
   * `external` description), by its key: `--inherit-fd N:KEY`.
   */
  inherit?: Map<string, number>;
  warn?: (line: string) => void;
  report?: (step: string, detail: string) => void;
  /** Called as page data is loaded: the size of each piece, and the image's total. */
  progress?: (bytes: number, total: number) => void;
  /** Which policy to enforce, and how the image must be authenticated (restore-policy.ts). */
  policy?: PolicyChoice;
  /** Called with the first process's PID (ours) once everything is in place, before any process is let go. */
  beforeResume?: (pid: number) => Promise<void>;
  /** Called the moment every process has been let go: the jail runs from here. */
  resumed?: () => void;
  /**
   * Restore private anonymous memory lazily (parts/lazy.ts): the processes
   * run before its pages are in place. `lazyDone` hears when they all are,
   * or why the jail was killed (a page refused).
   */
  lazy?: boolean;
  lazyDone?: (result: Promise<{ error: string | null; stats: LazyStats[] }>) => void;
  /**
   * Start the restorer through a setup helper that builds its namespaces
   * and root (vjail-oci's container): given the clock offsets the new time
   * namespace needs, it returns the helper's command line (JailOptions.launchVia).
   * The helper makes the PID and time namespaces itself.
   */
  launchVia?: (kernelFiles: { source: string; target: string }[], timeOffsets: TimeOffsets | undefined) => string[];
  /** Where the image's paths are checked before anything starts (with launchVia: the root file system the helper pivots into). */
  root?: string;
  /** The user namespace the helper (launchVia) makes from its config's maps, or null: it must be the image's (configUserNamespace). */
  configUserNamespace?: IdView | null;
  /** A restorer started before the image came (a migration's receiver): taken if it was started as the image asks, else ended. */
  prelaunched?: PrelaunchedRestorer;
}

type TimeOffsets = NonNullable<JailOptions['timeOffsets']>;

/** Rendered as /proc/PID/uid_map lines, for messages. */
const mapText = (map: IdView['uid']): string => map.map((r) => `${r.inside} ${r.outside} ${r.count}`).join(', ');

/**
 * An OCI container's user namespace comes back only through vjail-oci, in a
 * container mapping exactly the same IDs: elsewhere its processes' IDs would
 * mean other users (uid 0 inside would be root outside).
 */
function checkConfigUserNamespace(saved: IdView | null, opts: RestoreOptions): void {
  if (!opts.launchVia) {
    if (saved) throw new ImageError(`${opts.image} holds an OCI container that ran in a user namespace (uid map ${mapText(saved.uid)}); restore it with vjail-oci restore (podman container restore), whose config maps the same IDs`);
    return;
  }
  const given = opts.configUserNamespace ?? null;
  const same = (a: IdView['uid'], b: IdView['uid']): boolean => mapText([...a].sort((x, y) => x.inside - y.inside)) === mapText([...b].sort((x, y) => x.inside - y.inside));
  if (!saved && !given) return;
  if (!saved || !given || !same(saved.uid, given.uid) || !same(saved.gid, given.gid)) {
    const say = (v: IdView | null): string => (v ? `uid map ${mapText(v.uid)}, gid map ${mapText(v.gid)}` : 'no user namespace');
    throw new ImageError(`the container was checkpointed with ${say(saved)} but its config now gives ${say(given)}; restore it with the same linux.uidMappings and gidMappings`);
  }
}

export async function restore(opts: RestoreOptions): Promise<Jail> {
  const timer = new StepTimer(opts.lazy ? 'lazy restore' : 'restore');
  const report = opts.report ?? (() => {});
  const warn = opts.warn ?? ((line: string) => process.stderr.write(`vjail: warning: ${line}\n`));
  // Page files are verified as they are loaded (parts/memory.ts), before anything is let go.
  const image = openImage(opts.image, { verifyPages: false });
  opts.opened?.(image);
  timer.lap('open image');
  const inherit = opts.inherit ?? new Map<string, number>();
  const progress = opts.progress;
  if (progress) {
    const total = image.manifest.processes.reduce((n, p) => n + (p.state === 'live' ? p.mappings.reduce((k, m) => k + (m.pages?.size ?? 0), 0) : 0), 0);
    image.progress = (bytes) => progress(bytes, total);
  }
  const { cpuWarnings, plan } = preflight(image, { force: !!opts.force, inherit, root: opts.root });
  checkCwd(image, opts.root);
  checkObjects(image);
  timer.lap('preflight');
  const { manifest: m } = image;
  const first = m.processes[0]!;
  const threads = m.processes.reduce((n, p) => n + (p.state === 'live' ? p.threads.length : 0), 0);
  report('verify', `image of ${first.comm} (pid ${first.pid}): ${m.processes.length} process(es), ${threads} thread(s), profile ${m.profile}`);
  for (const w of cpuWarnings) warn(w);
  const timeOffsets = clockOffsets(m.clocks);
  if (timeOffsets) report('clocks', describeOffsets(timeOffsets));

  checkConfigUserNamespace(m.configUserNamespace, opts);
  const restorer = restorerPath();
  const { profile, emulate } = m;
  const policy = policyInForce(opts.image, m, opts.policy);
  const via = opts.launchVia;
  const want: RestorerLaunch = { profile, policy, emulate, pidNs: m.pidNamespace, userNs: userNamespaceToRestore(m), cgroup: opts.cgroup, timeOffsets, stdio: opts.stdio };
  // One started before the image came, if it was started as this image asks; else one now.
  const taken = via ? undefined : await opts.prelaunched?.take(want, warn);
  if (via) await opts.prelaunched?.discard();
  const { jail, sock } = taken ?? spawnRestorer(want, warn, via ? (files) => via(files, timeOffsets) : undefined);
  timer.lap(taken ? 'spawn jail (started before the image came)' : 'spawn jail');
  const held: Tracee[] = [];
  let sockOpen = true;
  const lazy = opts.lazy ? new LazyPages() : undefined;
  try {
    const { root, scratch: rootScratch } = taken?.seized ?? (await seizeRestorer(jail, held));
    if (taken?.seized) held.push(root);
    timer.lap('restorer seized');
    const sockAt = await prepareFds(root, rootScratch, image, restorer, sock);
    timer.lap('descriptors prepared');
    // Shared memory is made once, before the tree is forked: every process inherits it (its descriptors above the handover's).
    restoreSysvIpc(root.pid, image);
    const staged = await stageObjects(root, rootScratch, image, sockAt + 4, warn);
    if (m.sharedMemory.length || m.sysvIpc) report('shared', `${m.sharedMemory.length} shared-memory object(s)${m.sysvIpc ? `, ${m.sysvIpc.semaphores.length} semaphore set(s), ${m.sysvIpc.queues.length} message queue(s)` : ''}`);
    const shells = plan ? await createTree(root, rootScratch, m, plan, held) : [{ image: first, tracee: root, scratch: rootScratch }];
    if (plan) report('tree', `${shells.length} process(es) with their PIDs, sessions and groups${plan.helpers.length ? `; ${plan.helpers.length} helper(s) stood in for leaders or parents that are gone` : ''}`);
    await endZombies(shells);
    timer.lap('shared objects, tree');
    const live = shells.flatMap((s) => (s.image.state === 'live' ? [{ image: s.image, tracee: s.tracee, scratch: s.scratch }] : []));
    const pids = new Map(shells.map((s) => [s.image.pid, s.tracee.pid]));
    sockOpen = false; // placeFds closes it, whatever happens
    await placeFds(live, image, { restorer, sock, sockAt, rootPid: jail.pid, inherit, pids });
    timer.lap('place fds');
    report('descriptors', `${m.descriptions.length} open file description(s), ${m.pipes.length} pipe(s), placed in ${live.length} process(es)`);

    const loads: [Tracee, ThreadImage][] = [];
    let capsNotHere = 0n;
    let threadsLessCaps = 0;
    for (const { image: p, tracee } of shells) {
      if (p.state !== 'live') continue;
      const nsPid = m.pidNamespace ? p.pid : tracee.pid;
      const scratch = await restoreMemory(tracee, image, p.mappings, p, (line) => report('vdso', line), staged, lazy);
      timer.lap(`${p.pid} memory`);
      for (const w of await restoreTask(tracee, scratch, p)) warn(w);
      timer.lap(`${p.pid} task`);
      await restoreSignals(tracee, scratch, p.signals, nsPid);
      timer.lap(`${p.pid} signals`);
      const [leader, ...others] = p.threads;
      await restoreThread(tracee, scratch, leader!, { pid: nsPid, tid: nsPid });
      const mine: [Tracee, ThreadImage][] = [[tracee, leader!]];
      for (const th of others) {
        const t = await cloneTask(tracee, scratch, 'thread', th.tid);
        held.push(t);
        await restoreThread(t, scratch, th, { pid: nsPid, tid: th.tid });
        mine.push([t, th]);
      }
      timer.lap(`${p.pid} threads`);
      await restoreAdvice(tracee, p.advice, m.profile);
      await restoreTimers(tracee, scratch, p, nsPid);
      // Credentials last: dropping root ends what may be done inside.
      for (const [t, th] of mine) {
        const notHere = await restoreThreadState(t, scratch, th, `thread ${th.tid} of process ${p.pid}`);
        capsNotHere |= notHere;
        if (notHere) threadsLessCaps++;
      }
      await restorePrctl(tracee, p.prctl);
      loads.push(...mine);
      await tracee.syscallOk('munmap of the scratch page', SYS.munmap, scratch.addr, PAGE_SIZE);
      timer.lap(`${p.pid} advice, timers, credentials, prctl`);
      report('process', `${p.pid} ${p.comm}: ${p.mappings.length} mappings, ${p.threads.length} thread(s), ${p.fds.length} descriptor(s)`);
    }
    if (capsNotHere) warn(`${capNames(capsNotHere)} held in the image cannot be granted here (not in this side's bounding set); ${threadsLessCaps} thread(s) run without`);
    removeSysvSegments(root.pid, image);
    for (const [t, th] of loads) loadThread(t, th, m.cpu?.xstate);
    timer.lap('load registers');
    await opts.beforeResume?.(jail.pid);
    if (lazy) {
      const done = lazy.watch(() => {
        jail.kill('SIGKILL');
        void jail.exited.then(() => lazy.release());
      });
      opts.lazyDone?.(done);
    }
    for (const [t] of loads) t.detach();
    opts.resumed?.();
    timer.lap('let go');
    lazy?.prefetch();
    report('resume', m.pidNamespace ? `${shells.length} process(es) continue, the first as ${jail.pid}` : `process ${jail.pid} continues`);
    return jail;
  } catch (e) {
    if (sockOpen) closeSync(sock);
    for (const t of held.reverse()) await t.kill();
    jail.kill('SIGKILL');
    await jail.exited;
    lazy?.release();
    await lazy?.settled();
    throw e;
  }
}
