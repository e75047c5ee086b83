/**
 * Checkpoint one process in five steps, each reported:
 *   1 pre-dump  iterative copying while running needs soft-dirty tracking;
 *               without it, say so and copy everything while frozen
 *   2 freeze    the cgroup freezer (v2, else v1) on a jail with a cgroup of
 *               its own, then PTRACE_SEIZE + PTRACE_INTERRUPT (freeze.ts)
 *   3 dump      one collector per kind of kernel object, pages streamed to disk
 *   4 post-dump verify every checksum, fsync, publish by rename
 *   5 resume    detach (--leave-running) or kill
 * The image is published before the process is killed, and any failure
 * before that leaves the process running as it was, with no image.
 */
import { release } from 'node:os';
import { ImageWriter, IMAGE_MAGIC, IMAGE_VERSION, type Manifest, PAGE_SIZE } from '../image/format.js';
import { collectMemory, type Scratch } from './parts/memory.js';
import { collectRegisters } from './parts/registers.js';
import { collectSignals } from './parts/signals.js';
import { collectTask } from './parts/task.js';
import { freeze } from './freeze.js';
import { checkSupported, hasSoftDirty, jailOf, type JailInfo } from './jail-info.js';
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
  const warnings = checkSupported(opts.pid);
  const writer = new ImageWriter(opts.image);
  let tracee: Tracee | undefined;
  let published = false;
  for (const w of warnings) warn(w);
  try {
    report(1, 'pre-dump', hasSoftDirty()
      ? 'skipped: iterative pre-dump is not implemented yet; all pages are copied while frozen'
      : 'skipped: this kernel has no soft-dirty page tracking; all pages are copied while frozen');

    const frozen = await freeze([opts.pid]);
    tracee = frozen.tracees[0]!;
    const gprs = tracee.getRegs();
    report(2, 'freeze', frozen.detail);

    const registers = collectRegisters(tracee, gprs);
    const scratchAddr = await tracee.syscallOk('mmap of a scratch page', SYS.mmap, 0, PAGE_SIZE, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    const scratch: Scratch = { addr: scratchAddr, size: PAGE_SIZE };
    let signals, task;
    try {
      signals = await collectSignals(tracee, scratch);
      task = await collectTask(tracee, scratch);
    } finally {
      await tracee.syscall(SYS.munmap, scratch.addr, PAGE_SIZE);
    }
    const mappings = collectMemory(tracee, writer);
    const manifest: Manifest = {
      format: IMAGE_MAGIC,
      version: IMAGE_VERSION,
      createdAt: new Date().toISOString(),
      host: { release: release(), machine: 'x86_64', pageSize: PAGE_SIZE },
      profile: opts.profile ?? jail.profile,
      policy: jail.policy,
      emulate: jail.emulate,
      process: { ...task, registers, signals, mappings },
    };
    const bytes = mappings.reduce((n, m) => n + (m.pages?.size ?? 0), 0);
    report(3, 'dump', `${mappings.length} mappings, ${(bytes / 2 ** 20).toFixed(1)} MiB of page data`);

    writer.commit(manifest);
    published = true;
    report(4, 'post-dump', `verified, synced and published as ${opts.image}`);

    if (opts.leaveRunning) {
      tracee.detach();
      report(5, 'resume', `process ${opts.pid} continues`);
    } else {
      await tracee.kill();
      report(5, 'kill', `process ${opts.pid} killed`);
    }
    return manifest;
  } catch (e) {
    if (!published) writer.abort();
    tracee?.detach();
    throw e;
  }
}
