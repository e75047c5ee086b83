import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import type { Plan } from '../src/plan/action.js';
import { describeHost } from '../src/plan/host.js';
import { derivePlan } from '../src/plan/plan.js';
import { probeHostSyscalls } from '../src/probe.js';
import { loadProfile } from '../src/profile/load.js';
import { spawnJail } from '../src/index.js';
import { fixture, vjailBin } from './helpers/fixtures.js';
import { residents } from './helpers/resident.js';

/*
 * Asked for (spin: true, --spin auto), while opens answered with ADDFD come fast, spinner threads of the
 * SCHED_IDLE class keep the CPUs vjail may use from halting
 * (native/keepawake.h). They must spin only then (not for calls answered
 * with SYNC_WAKE_UP's wake-up on the supervisor's CPU, nor for a caller in
 * another autogroup, whose tasks a SCHED_IDLE thread would not give way
 * to), be off with spin: false (--spin off, the default), and be gone once the jail has
 * ended.
 */

const GETUID = 102;
const SCHED_IDLE = 5;

function planWithFixedGetuid(): Plan {
  const { plan } = derivePlan(loadProfile('host'), describeHost(probeHostSyscalls));
  const x86 = plan.arches.find((a) => a.arch === 'x86_64')!;
  x86.syscalls = [
    ...x86.syscalls.filter((d) => d.nr !== GETUID),
    { nr: GETUID, name: 'getuid', rules: [], fallback: { kind: 'notify', answer: { kind: 'value', value: 777n } } },
  ];
  return plan;
}

/** Threads of a process (this one by default) in the SCHED_IDLE class (field 41 of /proc/PID/task/TID/stat). */
function idleThreads(pid: number | 'self' = 'self'): number {
  let n = 0;
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return 0; // gone
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[41 - 3]) === SCHED_IDLE) n++;
    } catch {
      // ended meanwhile
    }
  }
  return n;
}

const autogroups = (() => {
  try {
    return readFileSync('/proc/sys/kernel/sched_autogroup_enabled', 'utf8').trim() === '1';
  } catch {
    return false;
  }
})();

/** A directory with the file `openfast DIR N` opens. */
function openDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'vjail-spin-open-'));
  writeFileSync(join(d, 'readable'), 'hi\n');
  return d;
}

async function collect(jail: ReturnType<typeof spawnJail>) {
  let out = '';
  jail.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  const exit = await jail.exited;
  await new Promise<void>((r) => (jail.stdout?.readableEnded ? r() : jail.stdout?.once('end', () => r())));
  return { out: out.trim(), exit, state: jail.receiverState()! };
}

/** 20000 opens through the open shim, each answered in C with ADDFD. */
async function opens(spin: boolean | undefined) {
  const dir = openDir();
  try {
    return await collect(
      spawnJail({
        command: [fixture('openfast'), dir, '20000'],
        profile: loadProfile('linux-4.19'),
        kernelFiles: 'shim',
        receiver: 'thread',
        spin,
        stdio: ['ignore', 'pipe', 'inherit'],
      }),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** 20000 getuid calls, each answered in C with a value (SYNC_WAKE_UP: the caller is woken on the supervisor's CPU). */
async function burst(spin: boolean) {
  const jail = spawnJail({
    command: [fixture('probe'), 'repeat', '1', String(GETUID), '20000'],
    profile: loadProfile('host'),
    plan: planWithFixedGetuid(),
    receiver: 'thread',
    spin,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return collect(jail);
}

const cpus = availableParallelism();

describe('keeping CPUs awake during bursts of notifications', () => {
  it('spins during a burst of opens answered with ADDFD, and its threads are gone once the jail has ended', async () => {
    expect(idleThreads()).toBe(0);
    const r = await opens(true);
    expect(r.exit.status).toBe(0);
    expect(r.out).toBe('failed 0');
    if (cpus >= 2) {
      // 20000 opens in a row: they come well within 200 µs of each other.
      expect(r.state.spinWakes).toBeGreaterThan(0);
      expect(r.state.spinCpuNs).toBeGreaterThan(0);
    } else {
      // One CPU: every wake-up is already local, no spinner is started.
      expect(r.state.spinWakes).toBe(0);
    }
    expect(idleThreads()).toBe(0);
  });

  it('does not spin for a burst of calls answered on its own CPU (SYNC_WAKE_UP)', async () => {
    const r = await burst(true);
    expect(r.exit.status).toBe(0);
    expect(r.out).toBe(`nr=${GETUID} calls=20000 ret=777 same=yes`);
    expect(r.state.spinWakes).toBe(0);
    expect(idleThreads()).toBe(0);
  });

  it('spin: false, and the default, start no spinner', async () => {
    for (const spin of [false, undefined]) {
      const r = await opens(spin);
      expect(r.exit.status).toBe(0);
      expect(r.out).toBe('failed 0');
      expect(r.state.spinWakes, `spin: ${spin}`).toBe(0);
      expect(r.state.spinCpuNs, `spin: ${spin}`).toBe(0);
      expect(idleThreads()).toBe(0);
    }
  });

  const runtime = mkdtempSync(join(tmpdir(), 'vjail-spin-'));
  afterAll(() => {
    for (const pid of residents(runtime)) process.kill(pid, 'SIGTERM');
    rmSync(runtime, { recursive: true, force: true });
  });

  for (const fast of [true, false]) {
    const who = fast ? 'the native front end (resident)' : 'the Node CLI';
    const run = (args: string[]) =>
      execa(fast ? vjailBin : 'node', fast ? args : [vjailBin, ...args], { reject: false, env: { XDG_RUNTIME_DIR: runtime }, timeout: 60_000 });

    it(`${who}: --spin off and --spin auto run the jail; another value is refused naming the choices`, async () => {
      for (const when of ['off', 'auto']) {
        const r = await run(['run', '--spin', when, '--profile', 'linux-4.19', '--kernel-files', 'shim', '--', 'cat', '/etc/hostname']);
        expect(r.exitCode).toBe(0);
        expect(r.stdout).toBe(readFileSync('/etc/hostname', 'utf8').trim());
      }
      const bad = await run(['run', '--spin', 'always', '--', 'true']);
      expect(bad.exitCode).not.toBe(0);
      expect(bad.stderr).toMatch(/--spin.*(auto|off)/s);
    });
  }

  /**
   * The spinners of a jail that has just ended go with its supervisor, a moment after the front end
   * exits: wait (bounded, 10 s) until the residents have none, so they are not counted as the next jail's.
   */
  async function previousSpinnersGone() {
    for (let i = 0; i < 200 && residents(runtime).some((pid) => idleThreads(pid) > 0); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(residents(runtime).map((pid) => idleThreads(pid)).filter((n) => n > 0), 'spinners of the previous jail still running after 10 s').toEqual([]);
  }

  it('the native front end hands --spin to the resident: its spinner threads live while the jail does, none with --spin off or without --spin', async () => {
    for (const when of ['auto', 'off', 'default']) {
      await previousSpinnersGone();
      const p = execa(vjailBin, ['run', ...(when === 'default' ? [] : ['--spin', when]), '--profile', 'linux-4.19', '--kernel-files', 'shim', '--', 'sleep', '3'], {
        reject: false,
        env: { XDG_RUNTIME_DIR: runtime },
        timeout: 60_000,
      });
      // Sampled until the jail has ended (it sleeps 3 s; bounded by the run's 60 s time-out): on a
      // loaded host the resident may take seconds to start it.
      let seen = 0;
      for (let i = 0; i < 650 && p.exitCode === null; i++) {
        await new Promise((r) => setTimeout(r, 100));
        for (const pid of residents(runtime)) seen = Math.max(seen, idleThreads(pid));
      }
      const r = await p;
      expect(r.exitCode, when).toBe(0);
      expect(residents(runtime).length, when).toBeGreaterThan(0);
      expect(seen, when).toBe(when !== 'auto' || cpus < 2 ? 0 : Math.min(cpus, 8));
    }
  });

  /**
   * What the resident's spinners did while `argv` (a `vjail run --stats`) ran: their most threads at
   * once, and the wake-ups the --stats table reports (0 when it has no spinning line). Counted wake-ups,
   * not CPU time: a spinner of the SCHED_IDLE class gets no CPU time while its group is busy.
   */
  async function residentSpin(argv: string[]) {
    await previousSpinnersGone();
    const p = execa(argv[0]!, argv.slice(1), { reject: false, env: { XDG_RUNTIME_DIR: runtime }, timeout: 60_000 });
    // Bounded: the jail's opens and a second's sleep; sampled until it has ended.
    let threads = 0;
    for (let i = 0; i < 600 && p.exitCode === null; i++) {
      await new Promise((r) => setTimeout(r, 50));
      for (const pid of residents(runtime)) threads = Math.max(threads, idleThreads(pid));
    }
    const r = await p;
    const wakes = Number(/kept awake for .*, woken (\d+) times/.exec(r.stderr)?.[1] ?? 0);
    // The resident's table says it served the jail; a front end that fell back to the Node CLI says why.
    const servedBy = Number(/served by the resident supervisor \(pid (\d+)\)/.exec(r.stderr)?.[1] ?? 0);
    return { r, threads, wakes, servedBy, residents: residents(runtime) };
  }

  const openThenSleep = (dir: string) => ['run', '--stats', '--spin', 'auto', '--profile', 'linux-4.19', '--kernel-files', 'shim', '--', 'sh', '-c', `${fixture('openfast')} ${dir} 20000 && sleep 1`];

  it.runIf(autogroups && cpus >= 2)(
    "the resident stays in the session that started it and spins for its jails, not for a jail of another session (another autogroup)",
    async () => {
      const dir = openDir();
      try {
        // Started here (if not yet): the resident is in this session's autogroup, as the jail is.
        const same = await residentSpin([vjailBin, ...openThenSleep(dir)]);
        expect(same.r.exitCode, same.r.stderr).toBe(0);
        expect(same.r.stdout).toBe('failed 0');
        expect(same.r.stderr).toMatch(/answered in C/);
        expect(same.threads).toBe(Math.min(cpus, 8));
        expect(same.wakes, same.r.stderr).toBeGreaterThan(0);
        expect(same.residents).toHaveLength(1);
        expect(same.servedBy, same.r.stderr).toBe(same.residents[0]);
        // setsid: the front end and its jail in a session (an autogroup) of their own, served by the
        // same resident, whose spinners would compete with them as a group of their own.
        const other = await residentSpin(['setsid', '-w', vjailBin, ...openThenSleep(dir)]);
        expect(other.r.exitCode, other.r.stderr).toBe(0);
        expect(other.r.stdout).toBe('failed 0');
        expect(other.r.stderr).toMatch(/answered in C/);
        expect(other.residents, 'the resident of the first session is the only one').toEqual(same.residents);
        expect(other.servedBy, other.r.stderr).toBe(same.residents[0]);
        expect(other.threads).toBe(Math.min(cpus, 8));
        expect(other.wakes, other.r.stderr).toBe(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
