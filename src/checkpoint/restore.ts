/**
 * Restore one process from an image. The image is verified completely
 * before anything is started. Then the restorer (native/restorer) is started
 * as an ordinary jail workload: vjail-init installs the seccomp filter of the
 * image's profile, re-derived for this host, and a new supervisor answers on
 * its listener. The restorer then only waits; this module drives it with
 * ptrace, one restorer per kind of kernel object (parts/*.ts), and finally
 * loads the image's registers and lets it go. System calls we inject pass
 * through the filter exactly as the program's own would.
 */
import { readlinkSync } from 'node:fs';
import { type Jail, type JailOptions, spawnJail } from '../jail.js';
import { openImage, PAGE_SIZE } from '../image/format.js';
import { dataPath } from '../paths.js';
import { checkMemory, restoreMemory } from './parts/memory.js';
import { restoreRegisters } from './parts/registers.js';
import { restoreSigmask, restoreSignals } from './parts/signals.js';
import { restoreTask } from './parts/task.js';
import { Tracee } from './tracee.js';
import { SYS } from './syscalls.js';

export interface RestoreOptions {
  image: string;
  stdio?: JailOptions['stdio'];
  /** A cgroup the new jail joins (a named jail's own). */
  cgroup?: string;
  warn?: (line: string) => void;
  report?: (step: string, detail: string) => void;
}

export function restorerPath(): string {
  return dataPath('build', 'Release', 'vjail-restorer');
}

export async function restore(opts: RestoreOptions): Promise<Jail> {
  const report = opts.report ?? (() => {});
  const warn = opts.warn ?? ((line: string) => process.stderr.write(`vjail: warning: ${line}\n`));
  const image = openImage(opts.image);
  checkMemory(image);
  const p = image.manifest.process;
  report('verify', `image of ${p.comm} (pid ${p.pid}), profile ${image.manifest.profile}`);

  const restorer = restorerPath();
  const { profile, policy, emulate } = image.manifest;
  const jail = spawnJail({ command: [restorer], profile, policy: policy ?? undefined, emulate, stdio: opts.stdio, cgroup: opts.cgroup, warn });
  let tracee: Tracee | undefined;
  try {
    // The workload execs the restorer right after the launch handshake.
    while (exeOf(jail.pid) !== restorer) {
      if (exeOf(jail.pid) === null) throw new Error('the restorer ended before it could be attached');
      await new Promise((r) => setImmediate(r));
    }
    tracee = await Tracee.seize(jail.pid, { killOnExit: true });
    const scratch = await restoreMemory(tracee, image);
    report('memory', `${p.mappings.length} mappings`);
    for (const w of await restoreTask(tracee, scratch, p)) warn(w);
    await restoreSignals(tracee, scratch, p.signals);
    await tracee.syscallOk('munmap of the scratch page', SYS.munmap, scratch.addr, PAGE_SIZE);
    restoreSigmask(tracee, p.signals);
    restoreRegisters(tracee, p.registers);
    tracee.detach();
    report('resume', `process ${jail.pid} continues`);
    return jail;
  } catch (e) {
    if (tracee) await tracee.kill();
    else jail.kill('SIGKILL');
    await jail.exited;
    throw e;
  }
}

function exeOf(pid: number): string | null {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return null;
  }
}
