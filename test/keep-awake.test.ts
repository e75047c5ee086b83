import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
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
 * While notifications come fast, spinner threads of the SCHED_IDLE class
 * keep the CPUs vjail may use from halting (native/keepawake.h). They must
 * spin only then, be off with spin: false (--spin off), and be gone once
 * the jail has ended.
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

async function burst(spin: boolean) {
  const jail = spawnJail({
    command: [fixture('probe'), 'repeat', '1', String(GETUID), '20000'],
    profile: loadProfile('host'),
    plan: planWithFixedGetuid(),
    receiver: 'thread',
    spin,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  jail.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  const exit = await jail.exited;
  await new Promise<void>((r) => (jail.stdout?.readableEnded ? r() : jail.stdout?.once('end', () => r())));
  return { out: out.trim(), exit, state: jail.receiverState()! };
}

const cpus = availableParallelism();

describe('keeping CPUs awake during bursts of notifications', () => {
  it('spins during a burst of natively answered calls, and its threads are gone once the jail has ended', async () => {
    expect(idleThreads()).toBe(0);
    const r = await burst(true);
    expect(r.exit.status).toBe(0);
    expect(r.out).toBe(`nr=${GETUID} calls=20000 ret=777 same=yes`);
    if (cpus >= 2) {
      // 20000 calls in a row: they come well within 200 µs of each other.
      expect(r.state.spinWakes).toBeGreaterThan(0);
      expect(r.state.spinCpuNs).toBeGreaterThan(0);
    } else {
      // One CPU: every wake-up is already local, no spinner is started.
      expect(r.state.spinWakes).toBe(0);
    }
    expect(idleThreads()).toBe(0);
  });

  it('spin: false starts no spinner', async () => {
    const r = await burst(false);
    expect(r.exit.status).toBe(0);
    expect(r.out).toBe(`nr=${GETUID} calls=20000 ret=777 same=yes`);
    expect(r.state.spinWakes).toBe(0);
    expect(r.state.spinCpuNs).toBe(0);
    expect(idleThreads()).toBe(0);
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

  it('the native front end hands --spin to the resident: its spinner threads live while the jail does, none with --spin off', async () => {
    for (const when of ['auto', 'off']) {
      const p = execa(vjailBin, ['run', '--spin', when, '--profile', 'linux-4.19', '--kernel-files', 'shim', '--', 'sleep', '3'], {
        reject: false,
        env: { XDG_RUNTIME_DIR: runtime },
        timeout: 60_000,
      });
      // Bounded: the jail sleeps 3 s; its supervisor is up well before that on any host this runs on.
      let seen = 0;
      for (let i = 0; i < 20 && p.exitCode === null; i++) {
        await new Promise((r) => setTimeout(r, 100));
        for (const pid of residents(runtime)) seen = Math.max(seen, idleThreads(pid));
      }
      const r = await p;
      expect(r.exitCode, when).toBe(0);
      expect(residents(runtime).length, when).toBeGreaterThan(0);
      expect(seen, when).toBe(when === 'off' || cpus < 2 ? 0 : Math.min(cpus, 8));
    }
  });
});
