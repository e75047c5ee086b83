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
 * that leaves every process running as it was, with no image.
 */
import { release } from 'node:os';
import {
  ImageWriter, IMAGE_MAGIC, IMAGE_VERSION, type LiveProcess, type Manifest, PAGE_SIZE, type ProcessImage, type ThreadImage,
} from '../image/format.js';
import { collectClocks } from './parts/clocks.js';
import { collectFiles, type HeldFile, sharedFileWarnings } from './parts/files.js';
import { collectMemory, type Scratch } from './parts/memory.js';
import { collectSignals } from './parts/signals.js';
import { collectTask } from './parts/task.js';
import { collectThread } from './parts/threads.js';
import { collectVdso, stepOutOfVdso } from './parts/vdso.js';
import { collectCpu } from './cpu.js';
import { collectZombie, nsIds } from './parts/tree.js';
import { freeze } from './freeze.js';
import { checkSupported, hasSoftDirty, jailOf, type JailInfo, type JailTree, jailTree } from './jail-info.js';
import { Tracee } from './tracee.js';
import { SYS } from './syscalls.js';

export interface CheckpointOptions {
  pid: number;
  image: string;
  leaveRunning?: boolean;
  /** Profile name; default: the one the jail's supervisor was started with. */
  profile?: string;
  /** Profile, policy and emulated calls when known (a named jail's state); default: from the supervisor's command line. */
  jail?: JailInfo;
  report?: (step: number, name: string, detail: string) => void;
  warn?: (line: string) => void;
}

const MAP_PRIVATE = 0x02;
const MAP_ANONYMOUS = 0x20;

export async function checkpoint(opts: CheckpointOptions): Promise<Manifest> {
  const report = opts.report ?? (() => {});
  const warn = opts.warn ?? (() => {});
  const jail = { ...jailOf(opts.pid), ...opts.jail };
  let tree = jailTree(opts.pid);
  checkSupported(tree);
  const writer = new ImageWriter(opts.image);
  const held = new Map<number, Tracee>();
  let published = false;
  try {
    report(1, 'pre-dump', hasSoftDirty()
      ? 'skipped: iterative pre-dump is not implemented yet; all pages are copied while frozen'
      : 'skipped: this kernel has no soft-dirty page tracking; all pages are copied while frozen');

    const tids = (t: JailTree): number[] => t.processes.flatMap((p) => p.tids);
    const frozen = await freeze(tids(tree));
    tids(tree).forEach((tid, i) => held.set(tid, frozen.tracees[i]!));
    // Without a freezer a task may fork or clone while the others are being stopped: stop those too.
    for (;;) {
      const now = jailTree(opts.pid);
      const fresh = tids(now).filter((tid) => !held.has(tid));
      tree = now;
      if (!fresh.length) break;
      for (const tid of fresh) held.set(tid, await Tracee.seize(tid));
    }
    report(2, 'freeze', tree.pidNs ? `${frozen.detail}; ${held.size} task(s) of ${tree.processes.length} process(es) held` : frozen.detail);

    const firstLive = tree.processes.find((p) => !p.zombie)!;
    const clocks = await collectClocks(held.get(firstLive.pid)!);
    const processes: ProcessImage[] = [];
    const stepped = { count: 0 };
    const sharedAnon = new Map<string, number>();
    const openFiles: HeldFile[] = [];
    for (const p of tree.processes) {
      const { hostPpid, ...ids } = tree.pidNs ? nsIds(p.pid) : { pid: p.pid, pgid: 0, sid: 0, hostPpid: 0 };
      const ppid = tree.pidNs ? nsIds(hostPpid).pid : 0;
      if (p.zombie) {
        processes.push(collectZombie(p.pid, ppid));
        continue;
      }
      const { files, warnings: unsaved } = collectFiles(p.pid);
      for (const w of unsaved) warn(w);
      openFiles.push(...files.map((file) => ({ pid: p.pid, file })));
      processes.push({ ...await collectProcess(p.tids.map((tid) => held.get(tid)!), writer, { ...ids, ppid }, tree.pidNs, stepped, sharedAnon), files });
    }
    for (const w of sharedFileWarnings(openFiles)) warn(w);
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
      processes,
    };
    const live = processes.filter((p) => p.state === 'live');
    const mappings = live.reduce((n, p) => n + p.mappings.length, 0);
    const bytes = live.flatMap((p) => p.mappings).reduce((n, m) => n + (m.pages?.size ?? 0), 0);
    const zombies = processes.length - live.length;
    const files = openFiles.length ? `, ${openFiles.length} open file(s)` : '';
    report(3, 'dump', `${tree.pidNs ? `${live.length} process(es)${zombies ? ` and ${zombies} zombie(s)` : ''}, ${held.size} thread(s), ` : ''}${mappings} mappings${files}, ${(bytes / 2 ** 20).toFixed(1)} MiB of page data${stepped.count ? `; ${stepped.count} thread(s) stepped out of the vDSO` : ''}`);

    writer.commit(manifest);
    published = true;
    report(4, 'post-dump', `verified, synced and published as ${opts.image}`);

    const what = tree.pidNs ? `the jail's ${tree.processes.length} process(es)` : `process ${opts.pid}`;
    if (opts.leaveRunning) {
      for (const t of held.values()) t.detach();
      report(5, 'resume', `${what} continue${tree.pidNs ? '' : 's'}`);
    } else {
      // A thread group leader's exit is reported only after its other threads': kill all, then wait leaders last.
      for (const p of tree.processes) if (!p.zombie) process.kill(p.pid, 'SIGKILL');
      for (const t of [...held.values()].reverse()) await t.kill();
      report(5, 'kill', `${what} killed`);
    }
    return manifest;
  } catch (e) {
    if (!published) writer.abort();
    for (const t of held.values()) t.detach();
    throw e;
  }
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
  stepped: { count: number },
  sharedAnon: Map<string, number>,
): Promise<Omit<LiveProcess, 'files'>> {
  const leader = threads[0]!;
  // A thread inside the vDSO's code could only go on with this kernel's vDSO: let it return first.
  for (const t of threads) if (await stepOutOfVdso(t)) stepped.count++;
  const scratchAddr = await leader.syscallOk('mmap of a scratch page', SYS.mmap, 0, PAGE_SIZE, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  const scratch: Scratch = { addr: scratchAddr, size: PAGE_SIZE };
  let signals, task;
  const images: ThreadImage[] = [];
  try {
    signals = await collectSignals(leader, scratch);
    task = await collectTask(leader, scratch);
    for (const t of threads) images.push(await collectThread(t, scratch, pidNs ? nsIds(leader.pid, t.pid).pid : t.pid));
  } finally {
    await leader.syscall(SYS.munmap, scratch.addr, PAGE_SIZE);
  }
  const mappings = collectMemory(leader, writer, sharedAnon);
  return { state: 'live', ...ids, ...task, signals, threads: images, mappings, vdso: collectVdso(leader) };
}
