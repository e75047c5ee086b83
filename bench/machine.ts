import { execFileSync } from 'node:child_process';
import { availableParallelism, cpus, loadavg, release, tmpdir, totalmem } from 'node:os';

/** What the numbers were measured on. */
export interface Machine {
  nproc: number;
  cpu: string;
  kernel: string;
  node: string;
  memoryGiB: number;
  /** libseccomp as pkg-config reports it, if installed. */
  libseccomp?: string;
  /** File system type of the directory the write bandwidth was measured in. */
  tmpFs?: string;
  clocksource?: string;
  /** 1-minute load average when the run ended: other work on the machine shows up as noise. */
  loadavg1: number;
}

function quiet(file: string, args: string[]): string | undefined {
  try {
    return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() || undefined;
  } catch {
    return undefined;
  }
}

export function describeMachine(): Machine {
  return {
    nproc: availableParallelism(),
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    kernel: release(),
    node: process.version,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    libseccomp: quiet('pkg-config', ['--modversion', 'libseccomp']),
    tmpFs: quiet('stat', ['-f', '-c', '%T', tmpdir()]),
    clocksource: quiet('cat', ['/sys/devices/system/clocksource/clocksource0/current_clocksource']),
    loadavg1: Math.round(loadavg()[0]! * 100) / 100,
  };
}
