/**
 * A named jail is its processes, not its first pid: ps counts them, kill
 * signals all of them, and checkpoint finds a daemonizing workload's service
 * after the process that started it has exited.
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture } from './helpers/fixtures.js';
import { freeze } from './helpers/freeze.js';
import { alive, pidOf, vjail, waitFor } from './helpers/run.js';

let counter: string;
let stateDir: string;
const started: string[] = [];

beforeAll(() => {
  counter = fixture('counter');
  stateDir = mkdtempSync(join(tmpdir(), 'vjail-identity-state-'));
  process.env.VJAIL_STATE_DIR = stateDir;
});

afterAll(async () => {
  for (const name of started) await vjail(['kill', name, '--signal', 'KILL']);
  delete process.env.VJAIL_STATE_DIR;
  delete process.env.VJAIL_FREEZER;
});

interface State {
  supervisorPid: number;
  pid: number | null;
  cgroup: { kind: 'v1' | 'v2'; path: string } | null;
}

const stateOf = (name: string): State => JSON.parse(readFileSync(join(stateDir, name, 'state.json'), 'utf8'));

/** The `vjail ps` columns of a jail: NAME PID PROFILE STATE PROCS STARTED COMMAND. */
async function ps(name: string): Promise<{ pid: string; state: string; procs: string } | undefined> {
  const r = await vjail(['ps']);
  expect(r.exitCode).toBe(0);
  expect(r.stdout.split('\n')[0]!.split(/\s+/).slice(0, 6)).toEqual(['NAME', 'PID', 'PROFILE', 'STATE', 'PROCS', 'STARTED']);
  const line = r.stdout.split('\n').find((l) => l.split(/\s+/)[0] === name);
  if (!line) return undefined;
  const c = line.split(/\s{2,}/);
  return { pid: c[1]!, state: c[3]!, procs: c[4]! };
}

async function waitForPs(name: string, want: (row: { state: string; procs: string }) => boolean): Promise<boolean> {
  const end = Date.now() + 30_000;
  while (Date.now() < end) {
    const row = await ps(name);
    if (row && want(row)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

function lines(path: string): number[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter(Boolean).map(Number);
}

async function start(name: string, args: string[]): Promise<void> {
  started.push(name);
  const r = await vjail(['run', '--name', name, '--detach', ...args]);
  expect(r.stderr).toBe('');
  expect(r.exitCode).toBe(0);
}

describe('a jail is its processes', { timeout: 90_000 }, () => {
  it.each([
    ['its cgroup', [], {}, '3101'],
    ['its PID namespace', ['--pid-ns'], {}, '3102'],
    ['its reaper (no cgroup)', [], { VJAIL_FREEZER: 'none' }, '3103'],
  ] as const)('found by %s: ps counts every process, kill stops a main process and its background child', async (_how, flags, env, secs) => {
    if ('VJAIL_FREEZER' in env) process.env.VJAIL_FREEZER = env.VJAIL_FREEZER;
    else delete process.env.VJAIL_FREEZER;
    const name = `bg-${secs}`;
    await start(name, [...flags, '--', 'sh', '-c', `sleep ${secs} & sleep ${secs}`]);
    expect(await waitForPs(name, (r) => r.state === 'running' && r.procs === '3')).toBe(true);
    const s = stateOf(name);
    expect(s.cgroup === null).toBe('VJAIL_FREEZER' in env);
    expect(pidOf(['sleep', secs])).toBeDefined();
    const json = JSON.parse((await vjail(['ps', '--json'])).stdout).find((j: { name: string }) => j.name === name);
    expect(json).toMatchObject({ state: 'running', processes: 3 });

    expect((await vjail(['kill', name])).exitCode).toBe(0);
    expect(await waitForPs(name, (r) => r.state === 'exited (143)' && r.procs === '0')).toBe(true);
    // The background child did not survive: no `sleep SECS` is left anywhere.
    expect(await waitFor(() => pidOf(['sleep', secs]) === undefined)).toBe(true);
    expect(alive(s.supervisorPid)).toBe(false);
  });

  it('kill --main signals the first process only; kill then signals the rest', async () => {
    delete process.env.VJAIL_FREEZER;
    await start('main-only', ['--', 'sh', '-c', 'sleep 3104 & sleep 3104']);
    expect(await waitForPs('main-only', (r) => r.procs === '3')).toBe(true);
    const s = stateOf('main-only');
    expect((await vjail(['kill', 'main-only', '--main'])).exitCode).toBe(0);
    expect(await waitFor(() => !alive(s.pid!))).toBe(true);
    // Both sleeps run on, and the jail with them.
    expect(await waitForPs('main-only', (r) => r.state === 'running' && r.procs === '2')).toBe(true);
    const again = await vjail(['kill', 'main-only', '--main']);
    expect(again.exitCode).toBe(2);
    expect(again.stderr.trim().split('\n')).toHaveLength(1);
    expect(again.stderr).toMatch(/the main process of jail "main-only" \(pid \d+\) has exited; 2 other process\(es\) run on: drop --main to signal them/);
    expect((await vjail(['kill', 'main-only', '--signal', 'KILL'])).exitCode).toBe(0);
    expect(await waitForPs('main-only', (r) => /^exited/.test(r.state))).toBe(true);
    expect(await waitFor(() => pidOf(['sleep', '3104']) === undefined)).toBe(true);
  });

  it('ps never says running for a jail with no live process', async () => {
    delete process.env.VJAIL_FREEZER;
    await start('empty', ['--', 'sleep', '3105']);
    expect(await waitForPs('empty', (r) => r.state === 'running' && r.procs === '1')).toBe(true);
    const s = stateOf('empty');
    // Its supervisor, frozen, cannot record the end: the state file still says running. Frozen by a
    // cgroup freezer, not SIGSTOP: a stopped supervisor is sent SIGHUP and SIGCONT by the kernel when
    // the jail's last process in its process group exits (an orphaned process group with stopped jobs).
    const thaw = freeze(s.supervisorPid);
    try {
      process.kill(s.pid!, 'SIGKILL');
      expect(await waitFor(() => !alive(s.pid!))).toBe(true);
      expect(JSON.parse(readFileSync(join(stateDir, 'empty', 'state.json'), 'utf8')).status).toBe('running');
      expect(await ps('empty')).toMatchObject({ state: 'ending', procs: '0' });
      const json = JSON.parse((await vjail(['ps', '--json'])).stdout).find((j: { name: string }) => j.name === 'empty');
      expect(json).toMatchObject({ state: 'ending', processes: 0 });
      const cp = await vjail(['checkpoint', 'empty', '--image', join(mkdtempSync(join(tmpdir(), 'vjail-identity-')), 'img')]);
      expect(cp.exitCode).toBe(2);
      expect(cp.stderr.trim().split('\n')).toHaveLength(1);
      expect(cp.stderr).toMatch(/jail "empty" has no live process left to checkpoint/);
      const kill = await vjail(['kill', 'empty']);
      expect(kill.exitCode).toBe(2);
      expect(kill.stderr).toMatch(/jail "empty" has no live process left to signal/);
    } finally {
      thaw();
    }
    expect(await waitForPs('empty', (r) => r.state === 'exited (137)')).toBe(true);
  });
});

describe('a daemonizing workload', { timeout: 120_000 }, () => {
  it('is checkpointed by name after its launcher exited, restored, and its log kept', async () => {
    delete process.env.VJAIL_FREEZER;
    const dir = mkdtempSync(join(tmpdir(), 'vjail-identity-'));
    const out = join(dir, 'out');
    // The launcher forks the service (which says so and becomes the counter) and exits.
    await start('daemon', ['--profile', 'linux-4.19', '--', 'sh', '-c', `(echo service started; exec ${counter} ${out}) &`]);
    expect(await waitFor(() => lines(out).length >= 20, 30_000)).toBe(true);
    const s = stateOf('daemon');
    expect(await waitFor(() => !alive(s.pid!))).toBe(true);
    const service = pidOf([counter, out])!;
    expect(service).not.toBe(s.pid);
    expect(await ps('daemon')).toMatchObject({ pid: String(s.pid), state: 'running', procs: '1' });
    expect((await vjail(['logs', 'daemon'])).stdout).toBe('service started');

    const img = join(dir, 'image');
    const cp = await vjail(['checkpoint', 'daemon', '--image', img]);
    expect(cp.stderr).not.toMatch(/no process/);
    expect(cp.exitCode).toBe(0);
    expect(cp.stderr).toMatch(new RegExp(`checkpoint 5/5 kill: process ${service} killed`));
    expect(await waitForPs('daemon', (r) => /^exited/.test(r.state))).toBe(true);
    // The jail's options come from its state record.
    expect(JSON.parse((await vjail(['inspect', '--json', img])).stdout).profile).toBe('linux-4.19');
    const before = lines(out);

    started.push('daemon-back');
    const r = await vjail(['restore', img, '--name', 'daemon-back', '--detach']);
    expect(r.exitCode).toBe(0);
    expect(await waitFor(() => lines(out).length >= before.length + 30, 30_000)).toBe(true);
    lines(out).forEach((v, i) => expect(v).toBe(i));
    expect(await ps('daemon-back')).toMatchObject({ state: 'running', procs: '1' });
    expect((await vjail(['kill', 'daemon-back'])).exitCode).toBe(0);
    expect(await waitForPs('daemon-back', (r2) => r2.state === 'exited (143)')).toBe(true);
  });

  it('left with several processes and no PID namespace, is refused in one line and keeps running', async () => {
    delete process.env.VJAIL_FREEZER;
    await start('two-daemons', ['--', 'sh', '-c', 'sleep 3106 & sleep 3106 &']);
    expect(await waitForPs('two-daemons', (r) => r.procs === '2')).toBe(true);
    const img = join(mkdtempSync(join(tmpdir(), 'vjail-identity-')), 'img');
    const cp = await vjail(['checkpoint', 'two-daemons', '--image', img]);
    expect(cp.exitCode).toBe(2);
    expect(cp.stderr.trim().split('\n')).toHaveLength(1);
    expect(cp.stderr).toMatch(/jail "two-daemons" has 2 processes \(\d+, \d+\); without its own PID namespace only a jail of one process can be checkpointed: run it with "vjail run --pid-ns"/);
    expect(existsSync(img)).toBe(false);
    expect(await ps('two-daemons')).toMatchObject({ state: 'running', procs: '2' });
    expect((await vjail(['kill', 'two-daemons'])).exitCode).toBe(0);
    expect(await waitForPs('two-daemons', (r) => /^exited/.test(r.state))).toBe(true);
  });
});
