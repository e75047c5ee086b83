import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, vjailBin } from './helpers/fixtures.js';
import { residents } from './helpers/resident.js';
import { vjail, waitFor } from './helpers/run.js';

/*
 * The escape suite: a jailed process tries to get around its policy through
 * the processes vjail places in or beside the jail (test/fixtures/escape.c),
 * and each test asserts that the denied effect did not happen.
 */

let escape: string;
let dir: string;
let denyMkdir: string;

beforeAll(() => {
  escape = fixture('escape');
  dir = mkdtempSync(join(tmpdir(), 'vjail-escape-'));
  denyMkdir = join(dir, 'deny-mkdir.json');
  writeFileSync(denyMkdir, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO' }] }));
});

afterAll(async () => {
  await execa('rm', ['-rf', dir]);
});

const modes: [string, string[]][] = [
  ['without a PID namespace', []],
  ['with --pid-ns', ['--pid-ns']],
];

describe.each(modes)('code outside the filter, %s', (_, ns) => {
  it('code written into the jail\'s reaper through /proc/PID/mem cannot make a call the policy denies', async () => {
    const target = join(dir, `injected${ns.join('')}`);
    const direct = await vjail(['run', ...ns, '--policy', denyMkdir, '--', escape, 'mkdir', target]);
    expect(direct.stdout).toBe('errno=EPERM (mkdir)');
    // The jail runs as root (CAP_SYS_PTRACE): the write itself succeeds; the code must not get its mkdir.
    const r = await vjail(['run', ...ns, '--policy', denyMkdir, '--', escape, 'inject', 'parent', target], { timeoutMs: 20_000 });
    expect(r.stdout).toBe('injected');
    expect(existsSync(target)).toBe(false);
  });
});

describe('vjail\'s processes and a workload of the same user', () => {
  it('without CAP_SYS_PTRACE it cannot open the memory of vjail-init or of the supervisor', async () => {
    // vjail itself run as nobody: the workload is nobody too, the same user as every vjail process.
    const script = `${escape} open-mem $(${escape} ancestor 2); ${escape} open-mem $(${escape} ancestor 3)`;
    const r = await execa('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'node', vjailBin, 'run', '--', 'sh', '-c', script], { reject: false, cwd: '/' });
    expect(r.stderr).toBe('');
    expect(r.stdout.split('\n')).toEqual(['errno=EACCES (open mem)', 'errno=EACCES (open mem)']);
  });

  it('through the native front end: it cannot open the memory of vjail-init, of vjail-run or of the resident supervisor', async () => {
    const runtime = mkdtempSync(join(tmpdir(), 'vjail-escape-runtime-'));
    chownSync(runtime, 65534, 65534);
    const asNobody = (args: string[]) =>
      execa('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', vjailBin, ...args], { reject: false, cwd: '/', env: { XDG_RUNTIME_DIR: runtime } });
    try {
      const launcher = await asNobody(['run', '--', 'sh', '-c', LAUNCHER_NAME]);
      expect(launcher.stdout).toBe('vjail-run');
      const resident = residentOf(runtime);
      const script = `${escape} open-mem $(${escape} ancestor 2); ${escape} open-mem $(${escape} ancestor 3); ${escape} open-mem ${resident}`;
      const r = await asNobody(['run', '--', 'sh', '-c', script]);
      expect(r.stderr).toBe('');
      expect(r.stdout.split('\n')).toEqual(['errno=EACCES (open mem)', 'errno=EACCES (open mem)', 'errno=EACCES (open mem)']);
    } finally {
      for (const pid of residents(runtime)) process.kill(pid, 'SIGTERM');
      rmSync(runtime, { recursive: true, force: true });
    }
  });
});

function residentOf(dir: string): number {
  const all = residents(dir);
  expect(all).toHaveLength(1);
  return all[0]!;
}

/** No live process named `name` is left (any found is killed, then reported). */
function expectNoneLeft(name: string): void {
  const left = named(name);
  for (const pid of left) process.kill(pid, 'SIGKILL');
  expect(left).toEqual([]);
}

/** Run by a jail: the name of the process that launched its vjail-init (vjail-run on the fast path). */
const LAUNCHER_NAME = 'p=$(sed -n "s/^PPid:\\t//p" /proc/$PPID/status); cat /proc/$p/comm';

/** Pids of live (not zombie) processes named `comm`. */
function named(comm: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/comm`, 'utf8').trim() !== comm) continue;
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z') out.push(Number(e));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

describe('a jail whose reaper is ended from inside', () => {
  const cases: [string, string[], string][] = [
    ['vjail-init killed with SIGKILL', [], 'kill'],
    ['vjail-init made to run a denied call', [], 'inject'],
    ['PID 1 of --pid-ns made to run a denied call', ['--pid-ns'], 'inject'],
  ];
  it.each(cases)('%s: no process of the jail outlives vjail run', async (_, ns, how) => {
    const name = `vjo${process.pid % 10000}${how}${ns.length}`.slice(0, 15);
    const r = await vjail(['run', ...ns, '--policy', denyMkdir, '--', escape, 'outlive', name, how, join(dir, `outlive-${how}${ns.length}`)], { timeoutMs: 20_000 });
    // "attacked" comes first (the jail may end the prober as the attack lands), "injected" when it lives to say it; a failed step adds an errno line.
    expect(r.stdout).toMatch(/^attacked(\ninjected)?$/);
    expect(r.exitCode).not.toBe(0);
    expectNoneLeft(name);
  }, 30_000);

  it('through the native front end and the resident supervisor, vjail-init killed with SIGKILL: nothing outlives vjail run', async () => {
    // bin/vjail.js run as a command takes the fast path: vjail-run launches vjail-init, the resident answers.
    const launcher = await execa(vjailBin, ['run', '--', 'sh', '-c', LAUNCHER_NAME], { reject: false });
    expect(launcher.stdout).toBe('vjail-run');
    const name = `vjo${process.pid % 10000}fast`.slice(0, 15);
    const r = await execa(vjailBin, ['run', '--policy', denyMkdir, '--', escape, 'outlive', name, 'kill', join(dir, 'outlive-fast')], { reject: false, timeout: 20_000 });
    expect(r.stdout).toMatch(/attacked$/);
    expect(r.exitCode).not.toBe(0);
    expectNoneLeft(name);
  }, 30_000);

  it('vjail-init killed, the jail in a v1 freezer cgroup: frozen, killed and thawed, nothing outlives vjail run', async () => {
    const name = `vjo${process.pid % 10000}v1`.slice(0, 15);
    const r = await execa('node', [vjailBin, 'run', '--', escape, 'outlive', name, 'kill', '-'], { reject: false, env: { VJAIL_FREEZER: 'v1' }, timeout: 20_000 });
    expect(r.stdout).toBe('attacked');
    expectNoneLeft(name);
  }, 30_000);
});

describe('a jail whose process group is killed from inside', () => {
  it('kill(0) ends the supervisor with the caller; vjail-init, in a group of its own, ends the rest of the jail', async () => {
    const name = `vjg${process.pid % 100000}`.slice(0, 15);
    // A session of its own for vjail: the jail's kill(0) must not reach this test runner.
    const r = await execa('node', [vjailBin, 'run', '--', escape, 'outlive', name, 'kill-group', '-'], { reject: false, detached: true, stdin: 'ignore' });
    expect(r.stdout).toBe('attacked');
    expect(r.signal).toBe('SIGKILL');
    // vjail-init learns of the supervisor's death from the kernel (its parent-death signal), then kills the jail.
    const gone = await waitFor(() => named(name).length === 0, 10_000);
    for (const pid of named(name)) process.kill(pid, 'SIGKILL');
    expect(gone).toBe(true);
  }, 30_000);
});
