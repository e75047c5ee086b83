import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { packageRoot } from '../paths.js';
import { TAG_CONTROL, TAG_HOSTROOT, TAG_PACKAGE, TAG_SHARE } from './initramfs.js';

export const QEMU = 'qemu-system-x86_64';

export interface BootOptions {
  vmlinux: string;
  initramfs: string;
  /** Host directory with boot.env and run.sh; receives stdout, stderr, exit. */
  controlDir: string;
  /** Host directory shared read-write with the guest. */
  shareDir: string;
  /** qemu -cpu model; the default qemu64 has no AVX. */
  cpu: string;
  memoryMiB: number;
  smp: number;
  /** Give up if the guest has not started the command by then. */
  bootTimeoutMs: number;
  /** Give up if the guest has not powered off by then (counted from qemu's start). */
  timeoutMs: number;
}

export interface BootResult {
  /** How qemu ended: 'exited' when the guest powered off. */
  outcome: 'exited' | 'boot-timeout' | 'timeout';
  /** ms from starting qemu until the guest reported it was starting the command. */
  bootMs?: number;
  /** Console output (kernel messages and the init's progress lines). */
  console: string;
  qemuStderr: string;
  qemuStatus: number | null;
}

/** Marker the guest's init prints right before it runs the command. */
export const RUNNING_MARKER = 'vjail-vm: running';

/** The host TSC rate in kHz, to spare the guest a calibration that can hang under TCG. */
export function hostCpuKHz(): number | undefined {
  try {
    const m = /^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    return m ? Math.round(Number(m[1]) * 1000) : undefined;
  } catch {
    return undefined;
  }
}

let qemuChecked = false;
export function checkQemu(): void {
  if (qemuChecked) return;
  const r = spawnSync(QEMU, ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error(`vjail vm: ${QEMU} is not available; install it (apt-get install qemu-system-x86)`);
  }
  qemuChecked = true;
}

function fsdev(id: string, path: string, tag: string, extra: string): string[] {
  // qemu's option parser takes ',,' for a literal comma in a value.
  const p = path.replace(/,/g, ',,');
  return ['-fsdev', `local,id=${id},path=${p},security_model=none${extra}`, '-device', `virtio-9p-device,fsdev=${id},mount_tag=${tag}`];
}

export function qemuArgs(o: BootOptions): string[] {
  const khz = hostCpuKHz();
  const cmdline = [
    'console=ttyS0',
    'quiet',
    'loglevel=1',
    'panic=-1',
    'rdinit=/init',
    'random.trust_cpu=on',
    // TCG's TSC is steady; without this the clocksource watchdog (judging it
    // against jiffies, which lag under emulation) drops to a coarse clock.
    'tsc=reliable',
    ...(khz ? [`tsc_early_khz=${khz}`] : []),
  ].join(' ');
  return [
    '-M', 'microvm,x-option-roms=off,isa-serial=on,rtc=on',
    '-accel', 'tcg',
    '-cpu', o.cpu,
    '-m', `${o.memoryMiB}M`,
    '-smp', String(o.smp),
    '-nodefaults',
    '-no-user-config',
    '-display', 'none',
    '-no-reboot',
    '-chardev', 'stdio,id=con,signal=off',
    '-serial', 'chardev:con',
    '-kernel', o.vmlinux,
    '-initrd', o.initramfs,
    '-append', cmdline,
    ...fsdev('fsroot', '/', TAG_HOSTROOT, ',readonly=on,multidevs=remap'),
    ...fsdev('fsctl', o.controlDir, TAG_CONTROL, ''),
    ...fsdev('fsshare', o.shareDir, TAG_SHARE, ',multidevs=remap'),
    ...fsdev('fspkg', packageRoot(), TAG_PACKAGE, ',readonly=on,multidevs=remap'),
  ];
}

/** Boot qemu once and wait until it exits or a timeout kills it. */
export function bootOnce(o: BootOptions): Promise<BootResult> {
  return new Promise((resolve, reject) => {
    const start = Date.now();
    const child = spawn(QEMU, qemuArgs(o), { stdio: ['ignore', 'pipe', 'pipe'] });
    let consoleText = '';
    let stderr = '';
    let bootMs: number | undefined;
    let outcome: BootResult['outcome'] = 'exited';
    const kill = (why: BootResult['outcome']) => {
      outcome = why;
      child.kill('SIGKILL');
    };
    const bootTimer = setTimeout(() => {
      if (bootMs === undefined) kill('boot-timeout');
    }, o.bootTimeoutMs);
    const runTimer = setTimeout(() => kill('timeout'), o.timeoutMs);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      consoleText += chunk;
      if (consoleText.length > 1 << 20) consoleText = consoleText.slice(-(1 << 19));
      if (bootMs === undefined && consoleText.includes(RUNNING_MARKER)) bootMs = Date.now() - start;
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', (err) => {
      clearTimeout(bootTimer);
      clearTimeout(runTimer);
      reject(new Error(`vjail vm: cannot start ${QEMU} (${err.message}); install it (apt-get install qemu-system-x86)`));
    });
    child.on('close', (status) => {
      clearTimeout(bootTimer);
      clearTimeout(runTimer);
      resolve({ outcome, bootMs, console: consoleText, qemuStderr: stderr, qemuStatus: status });
    });
  });
}

/** The last few non-empty lines of a text, for error messages. */
export function lastLines(text: string, n = 8): string {
  return text
    .replace(/\r/g, '')
    .split('\n')
    .filter((l) => l.trim())
    .slice(-n)
    .join('\n');
}
