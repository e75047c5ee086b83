/**
 * Checkpoint a jail in five steps, each reported: with its own PID
 * namespace every process of it (threads and zombies included), else the one
 * process named.
 *   1 pre-dump  iterative copying while running needs soft-dirty tracking;
 *               without it, say so and copy everything while frozen
 *   2 freeze    the cgroup freezer (v2, else v1) on a jail with a cgroup of
 *               its own, then PTRACE_SEIZE + PTRACE_INTERRUPT (freeze.ts)
 *   3 dump      one collector per kind of kernel object, pages streamed to disk
 *   4 post-dump fsync, read back and check the manifest and page file sizes,
 *               publish by rename (docs/IMAGE.md: why pages are not re-hashed)
 *   5 resume    detach (--leave-running) or kill
 * The image is published before anything is killed, and any failure before
 * that leaves every process running as it was, with no image: registers,
 * signal masks and queued signals as they were (tracee.ts), the cgroup
 * thawed; so does SIGINT or SIGTERM to vjail (interrupt.ts), and SIGKILL
 * (guard.ts).
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { release } from 'node:os';
import {
  ImageWriter, IMAGE_MAGIC, OffThreadHash, type OpenedImage, IMAGE_VERSION, type LiveProcess, type Manifest, PAGE_SIZE, type ProcessImage, type ThreadImage,
} from '../image/format.js';
import { collectClocks } from './parts/clocks.js';
import { collectFds, describeExternal, type FdCollection, unknownReason } from './parts/fds/index.js';
import { collectMemory, externalMappings, fileHashes, type Scratch } from './parts/memory.js';
import { SharedObjects } from './parts/shmem.js';
import { collectSysvIpc, ownIpcNamespace } from './parts/sysvipc.js';
import { collectSignals } from './parts/signals.js';
import { collectAdvice, readSmaps, refuseHiddenAdvice } from './parts/advice.js';
import { EarlyAdvice } from './parts/advice-watch.js';
import { collectPrctl, collectTask } from './parts/task.js';
import { collectTimers } from './parts/timers.js';
import { collectThread } from './parts/threads.js';
import { collectVdso, describeOwnVdso, leaveVdso } from './parts/vdso.js';
import { collectUserNamespace } from './parts/userns.js';
import { idViewOf } from '../userns.js';
import { collectCpu } from './cpu.js';
import { collectZombie, isZombie, nsIds, unrestorableTree } from './parts/tree.js';
import { CheckpointError, CheckpointUnsupported, ExternalStateError } from './errors.js';
import { verifyRestorable } from './preflight.js';
import { freeze } from './freeze.js';
import { checkSupported, jailOf, type JailInfo, type JailTree, jailTree, lockCheckpoint, supervisorOf, vjailInitOf } from './jail-info.js';
import { guarded } from './guard.js';
import { throwIfInterrupted } from './interrupt.js';
import { injectedCalls, Tracee } from './tracee.js';
import { type PreDump, type PreDumpRequest, preDumpStep } from './predump.js';
import { isNativeError } from '../native.js';
import { SYS } from './syscalls.js';
import { readPolicyText } from './policy-text.js';
import { StepTimer } from '../timings.js';

export interface CheckpointOptions {
  /**
   * The jail's user namespace, if it has one, is an OCI container's, made
   * from its config's maps (vjail-oci): saved as those maps, for a restore
   * through a config mapping the same. Otherwise it must be one vjail made.
   */
  configUserNamespace?: boolean;
  pid: number;
  image: string;
  leaveRunning?: boolean;
  /** Profile name; default: the one the jail's supervisor was started with. */
  profile?: string;
  /** Profile, policy and emulated calls when known (a named jail's state); default: from the supervisor's command line. */
  jail?: JailInfo;
  report?: (step: number, name: string, detail: string) => void;
  warn?: (line: string) => void;
  /**
   * What to do about state the image cannot hold (devices, connections
   * outside the jail, ...), found at freeze: 'fail' (default) refuses and
   * leaves the jail running untouched; 'warn' saves the rest, naming what
   * was left out in the image; 'terminate' ends the processes holding it
   * (SIGTERM, then SIGKILL after `graceMs`) and checkpoints the rest.
   */
  external?: 'fail' | 'warn' | 'terminate';
  /** Save established TCP connections (in repair mode) instead of refusing them as external state. */
  tcpEstablished?: boolean;
  /** The jail's output streams are pipes its supervisor's side reads (an engine's log pipes, a detached jail's bounded log): saved as its standard streams (parts/fds/stdio.ts). */
  outputPipes?: boolean;
  /** Sign the image with this key file as well as the local key (src/image/sign.ts). */
  signKey?: string;
  /** With external 'terminate': how long a holder has to end after SIGTERM (default 5 s). */
  graceMs?: number;
  /** Called with the size of each piece of page data written. */
  progress?: (bytes: number) => void;
  /**
   * After publishing, check the image as restore would before starting
   * anything (structure), that and every page file's sha256 (full), or not
   * (off). Default (auto): full up to SMALL_IMAGE bytes of page data, else
   * structure. A failure removes the image and leaves the jail running.
   */
  verify?: 'auto' | 'structure' | 'full' | 'off';
  /**
   * Called with every task held: once frozen, before anything is read
   * ('frozen'; may write into the processes, and what it writes is saved);
   * after publishing, before --leave-running lets them go ('resume'); and on
   * failure before they are let go ('failed'). (A self-checkpoint answers
   * its requester through it: src/jails/self-checkpoint.ts.)
   */
  onHeld?: (stage: 'frozen' | 'resume' | 'failed', held: ReadonlyMap<number, Tracee>, error?: unknown) => void;
  /**
   * Called once the image is published, every task still held: a stream or
   * a migration sends it from here. If it fails, the jail is let go as it
   * was (the image is the caller's to remove).
   */
  afterPublish?: (image: string, manifest: Manifest) => Promise<void>;
  /** Called just before the jail is stopped: from here until it is let go (or killed) it runs no more. */
  onStopping?: () => void;
  /**
   * Copy memory while the jail runs, then only what it wrote (predump.ts),
   * where the kernel tracks writes; else, and by default, every page is
   * copied while frozen. With leaveRunning the jail goes on before the page
   * files are written.
   */
  preDump?: PreDumpRequest;
  /**
   * false: the image's page files are not synced to disk (a temporary image
   * sent elsewhere at once: `vjail migrate`, whose jail is stopped while
   * they are written). Default true.
   */
  durable?: boolean;
}

/** Up to this much page data, hashing the page files back costs tens of ms (docs/IMAGE.md): done by default. */
const SMALL_IMAGE = 64 * 2 ** 20;

/** Run the restore-check on a published image; on failure remove it (the caller lets the jail go on). */
function checkRestorable(image: OpenedImage, verify: CheckpointOptions['verify'], bytes: number, root: string): string {
  const how = verify === 'auto' || verify === undefined ? (bytes <= SMALL_IMAGE ? 'full' : 'structure') : verify;
  if (how === 'off') return '';
  const dir = image.dir;
  try {
    const ms = verifyRestorable(image, { pages: how === 'full', root });
    return `; restorable (checked in ${ms.toFixed(0)} ms${how === 'full' ? ', page files hashed' : ''})`;
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw new CheckpointError(`the image would not restore (${e instanceof Error ? e.message : String(e)}); it was removed and the jail left running`);
  }
}

const MAP_PRIVATE = 0x02;
const MAP_ANONYMOUS = 0x20;

/** One checkpoint of a jail at a time: a second fails at once (jail-info.ts, lockCheckpoint). */
export async function checkpoint(opts: CheckpointOptions): Promise<Manifest> {
  const lock = lockCheckpoint(opts.pid);
  try {
    return await guarded(() => checkpointEnding(opts));
  } finally {
    lock.release();
  }
}

/** checkpointSettled; when the external-state step chose to end some processes, end them and go again. */
async function checkpointEnding(opts: CheckpointOptions): Promise<Manifest> {
  try {
    return await checkpointSettled(opts);
  } catch (e) {
    if (!(e instanceof HoldersToEnd)) throw e;
    const report = opts.report ?? (() => {});
    report(2, 'freeze', `terminating ${e.pids.length} process(es) holding state that cannot be saved: ${e.lines.join('; ')}`);
    await endProcesses(e.pids, opts.graceMs ?? 5000);
    // Whatever held such state is gone; anything new that does is refused.
    return await checkpointSettled({ ...opts, external: 'fail' });
  }
}

/** Waits before each new try of a checkpoint that found only transient state (a /proc file being read). */
const TRANSIENT_WAITS_MS = [25, 50, 100, 200, 400];

/**
 * checkpointOnce; when all it could not save was likely held for a moment
 * only (a process reading a /proc file), the jail is let go and the
 * checkpoint tried again, up to TRANSIENT_WAITS_MS.length more times, before
 * the external-state policy decides. Not when pre-dump rounds are mirrored
 * to a receiver (a migration), which has them once only.
 */
async function checkpointSettled(opts: CheckpointOptions): Promise<Manifest> {
  const mirrored = typeof opts.preDump === 'object' && opts.preDump.mirror !== undefined;
  const report = opts.report ?? (() => {});
  for (let attempt = 0; ; attempt++) {
    const last = mirrored || attempt >= TRANSIENT_WAITS_MS.length;
    try {
      return await checkpointOnce(opts, !last);
    } catch (e) {
      if (!(e instanceof TransientState) || last) throw e;
      const wait = TRANSIENT_WAITS_MS[attempt]!;
      report(2, 'freeze', `${e.lines.join('; ')}: open for a moment only, likely; the jail was let go, trying again in ${wait} ms (${attempt + 2} of ${TRANSIENT_WAITS_MS.length + 1})`);
      await sleep(wait);
    }
  }
}

/** All the external-state step found was transient (Unsaveable.transient), and a new try is allowed. */
class TransientState extends CheckpointError {
  constructor(readonly lines: string[]) {
    super('transient state');
  }
}

/** The external-state step chose to end these processes (our PIDs) and try again. */
class HoldersToEnd extends Error {
  constructor(
    readonly pids: number[],
    readonly lines: string[],
  ) {
    super('holders to end');
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function ended(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z';
  } catch {
    return true;
  }
}

/** SIGTERM, up to `graceMs` to end, then SIGKILL and up to 5 s more; throws if one still lives. */
async function endProcesses(pids: number[], graceMs: number): Promise<void> {
  const signal = (sig: NodeJS.Signals): void => {
    for (const pid of pids) {
      try {
        process.kill(pid, sig);
      } catch {
        // gone already
      }
    }
  };
  signal('SIGTERM');
  for (const [limit, next] of [[graceMs, 'SIGKILL'], [5000, null]] as const) {
    const until = Date.now() + limit;
    while (Date.now() < until && !pids.every(ended)) await sleep(10);
    if (pids.every(ended)) return;
    if (next) signal(next);
  }
  throw new CheckpointError(`process(es) ${pids.filter((p) => !ended(p)).join(', ')} did not end after SIGKILL within 5 s; nothing was saved`);
}

/** The jail's supervisor, or this process if that cannot be told. */
function supervisorOfOrSelf(pid: number): number {
  try {
    return supervisorOf(pid);
  } catch {
    return process.pid;
  }
}

async function checkpointOnce(opts: CheckpointOptions, retryTransient = false): Promise<Manifest> {
  const report = opts.report ?? (() => {});
  const warn = opts.warn ?? (() => {});
  const jail = opts.jail ?? jailOf(opts.pid);
  const policyText = jail.policyText ?? (jail.policy === null ? null : readPolicyText(jail.policy));
  let tree = jailTree(opts.pid);
  checkSupported(tree);
  const writer = new ImageWriter(opts.image, opts.progress, opts.durable ?? true);
  const held = new Map<number, Tracee>();
  let published = false;
  let fds: FdCollection | undefined;
  let pre: PreDump | null = null;
  let early: EarlyAdvice | null = null;
  let stoppedAt = 0;
  /** Let go before the image was finished (with a pre-dump): how long they were stopped. */
  let letGo = '';
  try {
    const running = tree.processes.filter((p) => !p.zombie).map((p) => p.pid);
    // This process may be the jail's own supervisor (a self-checkpoint): then its event loop must stay
    // free to answer the jail, and it keeps no advice watch of its own to read.
    const supervisor = supervisorOfOrSelf(opts.pid);
    const selfSupervised = supervisor === process.pid;
    pre = await preDumpStep(running, opts.preDump, opts.image, (line) => report(1, 'pre-dump', line));
    // With a pre-dump the stop is short: the advice (smaps) is read before it, if it can be trusted then.
    // (parts/advice-watch.ts: only if its supervisor watches what changes it).
    if (pre && !selfSupervised) early = await EarlyAdvice.read(supervisor, running);
    if (early) report(1, 'pre-dump', `memory advice of ${running.length} process(es) read while running`);
    // Started now, not while the jail is stopped: the hashing thread (it also reads smaps), the vDSO's description.
    new OffThreadHash().digest();
    describeOwnVdso();
    const timer = new StepTimer('frozen', injectedCalls);
    // The stop begins where the jail is frozen (or its first task interrupted): listing the jail
    // and finding its cgroup, just before, leave it running.
    const freezing = (): void => {
      opts.onStopping?.();
      stoppedAt = performance.now();
      timer.restart();
    };

    const tids = (t: JailTree): number[] => t.processes.flatMap((p) => p.tids);
    // Without a freezer, a short-lived task (a shell's `sleep 0.001`) may end between being
    // listed and being stopped: list again and retry (freeze lets go of all on failure).
    let frozen;
    for (let attempt = 1; ; attempt++) {
      try {
        // Listed again once the cgroup is frozen (when there is one): nothing forks or exits then.
        frozen = await freeze(() => tids((tree = jailTree(opts.pid))), { onFreezing: freezing });
        break;
      } catch (e) {
        const gone = tids(tree).some((tid) => !existsSync(`/proc/${tid}`) || isZombie(tid));
        if (!gone || attempt >= 50) throw e;
        tree = jailTree(opts.pid);
      }
    }
    timer.lap('freeze');
    frozen.pids.forEach((tid, i) => held.set(tid, frozen.tracees[i]!));
    // Without a freezer (or with v1's, thawed before the interrupts land) a task may fork or clone
    // while the others are being stopped: stop those too. With v2's the listing made frozen is whole.
    while (!frozen.whole) {
      const now = jailTree(opts.pid);
      const fresh = tids(now).filter((tid) => !held.has(tid));
      tree = now;
      if (!fresh.length) break;
      for (const tid of fresh) {
        try {
          held.set(tid, await Tracee.seize(tid));
        } catch (e) {
          if (!(isNativeError(e) && e.code === 'ESRCH')) throw e; // ended meanwhile: the next listing says how
        }
      }
    }
    timer.lap('list again');
    // Waits for injected calls' stops in C, unless this process is the jail's own supervisor.
    for (const t of held.values()) t.spinWhileWaiting(!selfSupervised);
    // From here on signals wait in their queues (and are saved there) until each thread is let go.
    for (const t of held.values()) await t.holdSignals();
    timer.lap('hold signals');
    throwIfInterrupted();
    report(2, 'freeze', tree.pidNs ? `${frozen.detail}; ${held.size} task(s) of ${tree.processes.length} process(es) held` : frozen.detail);
    const unrestorable = tree.pidNs ? unrestorableTree(tree.processes) : undefined;
    if (unrestorable) throw new CheckpointUnsupported(`cannot checkpoint: ${unrestorable}`);
    opts.onHeld?.('frozen', held);

    const firstLive = tree.processes.find((p) => !p.zombie)!;
    timer.lap('onHeld');
    const clocks = await collectClocks(held.get(firstLive.pid)!);
    timer.lap('clocks');
    const processes: ProcessImage[] = [];
    // A thread inside the vDSO's code could only go on with this kernel's vDSO: let it out first,
    // before anything of the jail is collected (it may run a moment: parts/vdso.ts).
    const stepped = { count: 0, ran: false };
    for (const t of held.values()) {
      const how = await leaveVdso(t);
      if (how) stepped.count++;
      if (how === 'ran') stepped.ran = true;
    }
    // Run on its own, a thread may have started another: then this is not the jail that was listed.
    if (stepped.ran && tids(jailTree(opts.pid)).some((tid) => !held.has(tid))) {
      throw new CheckpointError('a task was started while a thread was let out of the vDSO; nothing was saved and the jail runs on: checkpoint again');
    }
    timer.lap('leave vDSO');
    /** Page files of pre-dumped mappings, written once nothing needs holding. */
    const later: (() => void)[] = [];
    const nsPid = (pid: number): number => (tree.pidNs ? nsIds(pid).pid : pid);
    const imagePids = new Map(tree.processes.map((p) => [p.pid, nsPid(p.pid)]));
    const livePids = tree.processes.filter((p) => !p.zombie).map((p) => p.pid);
    fds = collectFds(livePids, vjailInitOf(firstLive.pid), writer, imagePids, { tcpEstablished: opts.tcpEstablished, outputPipes: opts.outputPipes });
    timer.lap('fds');
    const external = externalStep(fds, livePids, opts.external ?? 'fail', nsPid, tree.processes[0]!.pid, retryTransient);
    if (external.length) {
      report(2, 'freeze', `state that cannot be saved, left out (--external warn):`);
      for (const line of external) warn(`left out of the image: ${line}`);
    }
    // With an IPC namespace of its own, every System V object in it is the jail's.
    const ownIpc = tree.pidNs && ownIpcNamespace(firstLive.pid);
    const objects = new SharedObjects(writer, ownIpc);
    const sysvIpc = ownIpc ? collectSysvIpc(firstLive.pid, writer, objects) : null;
    timer.lap('ipc');
    for (const p of tree.processes) {
      throwIfInterrupted();
      const { hostPpid, ...ids } = tree.pidNs ? nsIds(p.pid) : { pid: p.pid, pgid: 0, sid: 0, hostPpid: 0 };
      const ppid = tree.pidNs ? nsIds(hostPpid).pid : 0;
      if (p.zombie) {
        processes.push(collectZombie(p.pid, ppid));
        continue;
      }
      processes.push({ ...await collectProcess(p.tids.map((tid) => held.get(tid)!), writer, { ...ids, ppid }, tree.pidNs, objects, warn, pre, early, later, timer), fds: fds.fds.get(p.pid)! });
    }
    refuseHiddenAdvice(processes, opts.profile ?? jail.profile);
    timer.lap('advice check');
    const manifest: Manifest = {
      format: IMAGE_MAGIC,
      version: IMAGE_VERSION,
      createdAt: new Date().toISOString(),
      host: { release: release(), machine: 'x86_64', pageSize: PAGE_SIZE },
      profile: opts.profile ?? jail.profile,
      policy: jail.policy,
      emulate: jail.emulate,
      clocks,
      cpu: collectCpu(firstLive.pid, processes.flatMap((p) => (p.state === 'live' ? p.threads.map((t) => t.registers) : []))),
      pidNamespace: tree.pidNs,
      userNamespace: opts.configUserNamespace ? null : collectUserNamespace(firstLive.pid),
      configUserNamespace: opts.configUserNamespace ? idViewOf(firstLive.pid) : null,
      policyText,
      processes,
      descriptions: fds.descriptions,
      pipes: fds.pipes,
      blobs: writer.blobs,
      external,
      sharedMemory: objects.list,
      sysvIpc,
      tcpEstablished: opts.tcpEstablished ?? false,
    };
    timer.lap('manifest');
    const what = tree.pidNs ? `the jail's ${tree.processes.length} process(es)` : `process ${opts.pid}`;
    const stopped = (): string => `stopped ${(performance.now() - stoppedAt).toFixed(0)} ms`;
    if (pre && opts.leaveRunning && !opts.onHeld) {
      // Everything is collected: the rest comes from the pre-dump's copies.
      fds.release(true);
      for (const t of held.values()) t.release();
      letGo = `${stopped()}; let go before the page files were written from the pre-dump's copies`;
      timer.lap('let go');
    }
    // Every page is read: the jail need not pay for tracking any longer. Unregistering walks the
    // page tables of every tracked range (tens of ms a GiB), so it is done once the jail runs if it
    // may, and else just before it is let go; a jail killed once published never pays it while stopped.
    if (letGo) {
      pre?.untrack();
      timer.lap('untrack');
    }
    for (const step of later) step();
    timer.lap('page files');
    const live = processes.filter((p) => p.state === 'live');
    const mappings = live.reduce((n, p) => n + p.mappings.length, 0);
    const bytes = live.flatMap((p) => p.mappings).reduce((n, m) => n + (m.pages?.size ?? 0), 0);
    const zombies = processes.length - live.length;
    const files = `, ${fds.descriptions.length} open file description(s)${fds.pipes.length ? ` (${fds.pipes.length} pipe(s))` : ''}${objects.list.length ? `, ${objects.list.length} shared-memory object(s)` : ''}`;
    report(3, 'dump', `${tree.pidNs ? `${live.length} process(es)${zombies ? ` and ${zombies} zombie(s)` : ''}, ${held.size} thread(s), ` : ''}${mappings} mappings, ${(bytes / 2 ** 20).toFixed(1)} MiB of page data${files}${stepped.count ? `; ${stepped.count} thread(s) moved out of the vDSO` : ''}${early ? `; ${early.summary()}` : ''}`);

    throwIfInterrupted();
    // A temporary image not checked here is read once, by a reader that checks it in full before anything of it runs.
    const written = writer.commit(manifest, opts.signKey, { readBack: opts.durable !== false || opts.verify !== 'off' });
    timer.lap('commit');
    published = true;
    report(4, 'post-dump', `verified${opts.durable === false ? '' : ', synced'} and published as ${opts.image}${checkRestorable(written, opts.verify, bytes, `/proc/${firstLive.pid}/root`)}`);
    await opts.afterPublish?.(opts.image, written.manifest);

    if (letGo) {
      report(5, 'resume', `${what} continue${tree.pidNs ? '' : 's'} (${letGo})`);
    } else if (opts.leaveRunning) {
      pre?.untrack();
      fds.release(true);
      opts.onHeld?.('resume', held);
      for (const t of held.values()) t.release();
      report(5, 'resume', `${what} continue${tree.pidNs ? '' : 's'} (${stopped()})`);
    } else {
      // A thread group leader's exit is reported only after its other threads': kill all, then wait leaders last.
      for (const p of tree.processes) if (!p.zombie) process.kill(p.pid, 'SIGKILL');
      for (const t of [...held.values()].reverse()) await t.kill();
      fds.release(false); // connections kept in repair mode close without a word to their peers
      report(5, 'kill', `${what} killed`);
    }
    return manifest;
  } catch (e) {
    if (!published) writer.abort();
    if (!letGo) fds?.release(true);
    try {
      opts.onHeld?.('failed', held, e);
    } catch {
      // the failure itself is what is reported
    }
    // Its writes are not tracked once it runs on (closing the tracking, in finally, would be after it is let go).
    try {
      pre?.untrack();
    } catch {
      // closed in finally all the same; the failure itself is what is reported
    }
    for (const t of held.values()) t.release();
    throw e;
  } finally {
    pre?.close();
    early?.close();
    // The jail runs on or is gone: the mapped files' hashes go to the cache now, not while it was held.
    fileHashes.persist();
  }
}

/**
 * The external-state step: what no kind can save, per the policy. Returns
 * the lines to record in the image ('warn'), or throws: ExternalStateError
 * ('fail': the caller lets every process go, untouched), HoldersToEnd, or
 * TransientState (with `retryTransient`, before any policy, when all of it
 * is transient).
 */
function externalStep(fds: FdCollection, live: number[], policy: 'fail' | 'warn' | 'terminate', nsPid: (pid: number) => number, first: number, retryTransient: boolean): string[] {
  // A kernel object's mapping (an io_uring's rings) goes with its descriptor, or stands alone once that is closed.
  const mapped = live.flatMap((pid) => externalMappings(pid).map((e) => ({ pid, e })));
  if (!fds.external.length && !mapped.length) return [];
  const comm = (pid: number): string => {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    } catch {
      return '?';
    }
  };
  const lines = [
    ...describeExternal(fds.external, nsPid, comm),
    ...mapped.map(({ pid, e }) => `process ${nsPid(pid)} (${comm(pid)}) mapping 0x${e.start.toString(16)}-0x${e.end.toString(16)}: ${unknownReason(e.name!)} [${e.name}]`),
  ];
  if (retryTransient && !mapped.length && fds.external.every((x) => x.transient)) throw new TransientState(lines);
  if (policy === 'warn') return lines;
  const holders = [...new Set([...fds.external.map((x) => x.pid), ...mapped.map((x) => x.pid)])];
  if (policy === 'terminate') {
    if (holders.includes(first)) {
      throw new ExternalStateError(`the jail's first process holds state that cannot be saved; terminating it would end the jail`, lines);
    }
    throw new HoldersToEnd(holders, lines);
  }
  throw new ExternalStateError(
    `${holders.length} process(es) hold state a checkpoint cannot save; nothing was saved and the jail runs on (--external warn saves the rest, --external terminate ends those processes first)`,
    lines,
  );
}

/**
 * One live process, every thread stopped (leader first). System calls run
 * in it use a scratch page that is unmapped again before its memory is read.
 */
async function collectProcess(
  threads: Tracee[],
  writer: ImageWriter,
  ids: { pid: number; ppid: number; pgid: number; sid: number },
  pidNs: boolean,
  objects: SharedObjects,
  warn: (line: string) => void,
  pre: PreDump | null,
  early: EarlyAdvice | null,
  later: (() => void)[],
  timer: StepTimer,
): Promise<Omit<LiveProcess, 'fds'>> {
  const leader = threads[0]!;
  // Read before the freeze, if nothing can have changed it since (parts/advice-watch.ts); before the scratch page.
  const earlySmaps = early?.smapsIfUnchanged(leader.pid, readFileSync(`/proc/${leader.pid}/maps`, 'utf8'));
  const scratchAddr = await leader.syscallOk('mmap of a scratch page', SYS.mmap, 0, PAGE_SIZE, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  const scratch: Scratch = { addr: scratchAddr, size: PAGE_SIZE };
  let signals, task, timers, prctl;
  const images: ThreadImage[] = [];
  const jailTid = (tid: number): number => (pidNs ? nsIds(leader.pid, tid).pid : tid);
  // smaps (the advice) is read off the main thread beside the calls below: the kernel walks every
  // page table for it (16 ms a GiB on a quiet host), holding the mm's lock for reading. The calls
  // that need it for writing wait for that, so they come last: brk (in collectTask), then munmap.
  const smaps = earlySmaps !== undefined ? Promise.resolve(earlySmaps) : readSmaps(leader.pid);
  smaps.then(() => timer.note(`${leader.pid} smaps ${earlySmaps !== undefined ? 'read before the freeze' : 'read'}`), () => {}); // awaited below; an earlier failure comes first
  try {
    timer.lap(`${leader.pid} scratch page`);
    signals = await collectSignals(leader, scratch);
    timer.lap(`${leader.pid} signals`);
    prctl = await collectPrctl(leader, scratch);
    timer.lap(`${leader.pid} prctl`);
    timers = await collectTimers(leader, scratch, pidNs, jailTid, warn);
    timer.lap(`${leader.pid} timers`);
    for (const t of threads) images.push(await collectThread(t, scratch, jailTid(t.pid)));
    timer.lap(`${leader.pid} threads`);
    task = await collectTask(leader, scratch);
    timer.lap(`${leader.pid} task`);
  } finally {
    await leader.syscall(SYS.munmap, scratch.addr, PAGE_SIZE);
  }
  timer.lap(`${leader.pid} scratch unmap`);
  const mappings = collectMemory(leader, writer, objects, pre?.forPid(leader.pid), later, timer);
  timer.lap(`${leader.pid} memory`);
  const advice = collectAdvice(await smaps, mappings);
  timer.lap(`${leader.pid} advice`);
  const vdso = collectVdso(leader);
  timer.lap(`${leader.pid} vdso`);
  return { state: 'live', ...ids, ...task, signals, threads: images, mappings, vdso, timers, advice, prctl };
}
