import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeFreezers } from '../src/cgroup.js';
import { ptraceAddon } from '../src/native/ptrace.js';
import { fixture } from './helpers/fixtures.js';
import { alive, vjail, waitFor } from './helpers/run.js';

let counter: string;
let stateDir: string;
const started: string[] = [];

beforeAll(() => {
  counter = fixture('counter');
  // The CLI runs as a child of this test process and takes its environment.
  stateDir = mkdtempSync(join(tmpdir(), 'vjail-state-'));
  process.env.VJAIL_STATE_DIR = stateDir;
});

afterAll(async () => {
  // Nothing started here outlives the tests.
  for (const name of started) await vjail(['kill', name, '--signal', 'KILL']);
  delete process.env.VJAIL_STATE_DIR;
  delete process.env.VJAIL_FREEZER;
});

interface State {
  name: string;
  supervisorPid: number;
  pid: number | null;
  profile: string;
  command: string[];
  detached: boolean;
  cgroup: { kind: 'v1' | 'v2'; path: string } | null;
  status: string;
  exit: { status: number } | null;
}

const stateOf = (name: string): State => JSON.parse(readFileSync(join(stateDir, name, 'state.json'), 'utf8'));

/** The `vjail ps` line of a jail, split in columns (the command is the rest). */
async function psLine(name: string): Promise<string[] | undefined> {
  const r = await vjail(['ps']);
  expect(r.exitCode).toBe(0);
  const line = r.stdout.split('\n').find((l) => l.split(/\s+/)[0] === name);
  return line?.split(/\s{2,}/);
}

async function psState(name: string): Promise<string | undefined> {
  return (await psLine(name))?.[3];
}

async function waitForState(name: string, want: RegExp): Promise<boolean> {
  const end = Date.now() + 30_000;
  while (Date.now() < end) {
    if (want.test((await psState(name)) ?? '')) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

function lines(path: string): number[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter(Boolean).map(Number);
}

function expectConsecutive(values: number[]): void {
  values.forEach((v, i) => expect(v).toBe(i));
}

/** Start the counter as a detached named jail and wait until it has counted a little. */
async function startCounter(name: string, out: string): Promise<State> {
  started.push(name);
  const r = await vjail(['run', '--name', name, '--detach', '--', counter, out]);
  expect(r.stderr).toBe('');
  expect(r.exitCode).toBe(0);
  expect(r.stdout).toBe(name);
  expect(await waitFor(() => lines(out).length >= 20, 30_000)).toBe(true);
  return stateOf(name);
}

function freezerState(cg: { kind: 'v1' | 'v2'; path: string }): string {
  if (cg.kind === 'v2') return /^frozen 1$/m.test(readFileSync(join(cg.path, 'cgroup.events'), 'utf8')) ? 'FROZEN' : 'THAWED';
  return readFileSync(join(cg.path, 'freezer.state'), 'utf8').trim();
}

describe('named jails', { timeout: 60_000 }, () => {
  it('run --name --detach: ps shows it running, kill stops it, ps shows its status, rm forgets it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-named-'));
    const out = join(dir, 'out');
    const s = await startCounter('count-1', out);
    expect(s.detached).toBe(true);
    expect(alive(s.supervisorPid)).toBe(true);
    const line = await psLine('count-1');
    expect(line?.slice(1, 4)).toEqual([String(s.pid), 'host', 'running']);
    expect(line?.[4]).toBe('1'); // PROCS
    expect(line?.[6]).toBe(`${counter} ${out}`);

    expect((await vjail(['kill', 'count-1'])).exitCode).toBe(0);
    expect(await waitForState('count-1', /^exited \(143\)$/)).toBe(true);
    expect(stateOf('count-1').exit?.status).toBe(143);
    expect(await waitFor(() => !alive(s.supervisorPid))).toBe(true);
    if (s.cgroup) expect(existsSync(s.cgroup.path)).toBe(false);

    expect((await vjail(['rm', 'count-1'])).exitCode).toBe(0);
    expect(await psLine('count-1')).toBeUndefined();
    expect(existsSync(join(stateDir, 'count-1'))).toBe(false);
  });

  it('logs prints what a detached jail wrote, and --follow until it ends', async () => {
    const r = await vjail(['run', '--name', 'talker', '--detach', '--', 'sh', '-c', 'echo to stdout; echo to stderr >&2; echo last']);
    expect(r.exitCode).toBe(0);
    const follow = await vjail(['logs', 'talker', '--follow']);
    expect(follow.exitCode).toBe(0);
    expect(follow.stdout.split('\n').filter(Boolean).sort()).toEqual(['last', 'to stderr', 'to stdout']);
    expect(await waitForState('talker', /^exited \(0\)$/)).toBe(true);
    const again = await vjail(['logs', 'talker']);
    expect(again.stdout).toBe(follow.stdout);
  });

  it('a foreground named run is listed with its status and has no log', async () => {
    const r = await vjail(['run', '--name', 'fg', '--', 'sh', '-c', 'exit 3']);
    expect(r.exitCode).toBe(3);
    expect(await psState('fg')).toBe('exited (3)');
    const logs = await vjail(['logs', 'fg']);
    expect(logs.exitCode).toBe(2);
    expect(logs.stderr.trim().split('\n')).toHaveLength(1);
    expect(logs.stderr).toMatch(/has no log: only a jail started with --detach has one/);
  });

  it('a name in use by a running jail is refused with one line and exit 2; bad names and unknown jails too', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-named-'));
    await startCounter('taken', join(dir, 'out'));
    for (const args of [
      ['run', '--name', 'taken', '--detach', '--', 'true'],
      ['run', '--name', 'taken', '--', 'true'],
    ]) {
      const r = await vjail(args);
      expect(r.exitCode).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/^vjail: a jail named "taken" is already running .*choose another --name, or stop it with "vjail kill taken"/);
    }
    expect(await psState('taken')).toBe('running');
    const rm = await vjail(['rm', 'taken']);
    expect(rm.exitCode).toBe(2);
    expect(rm.stderr).toMatch(/is running; stop it first with "vjail kill taken"/);

    for (const [args, message] of [
      [['run', '--name', 'no/slash', '--', 'true'], /invalid jail name "no\/slash": use letters, digits/],
      [['run', '--detach', '--', 'true'], /--detach needs a name for the jail: add --name NAME/],
      [['kill', 'nosuch'], /no jail named "nosuch"; "vjail ps" lists them/],
      [['kill', 'taken', '--signal', 'NOPE'], /unknown signal "NOPE"/],
      [['checkpoint', 'nosuch', '--image', join(dir, 'img')], /no jail named "nosuch"/],
    ] as const) {
      const r = await vjail([...args]);
      expect(r.exitCode).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(message);
    }
    await vjail(['kill', 'taken']);
    expect(await waitForState('taken', /^exited/)).toBe(true);
  });

  it('a dead supervisor is detected: ps shows the jail gone, and it can be removed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-named-'));
    const s = await startCounter('orphan', join(dir, 'out'));
    process.kill(s.supervisorPid, 'SIGKILL');
    expect(await waitForState('orphan', /^gone$/)).toBe(true);
    // vjail-init ends the jail with its supervisor: nothing runs unsupervised.
    expect(await waitFor(() => !alive(s.pid!))).toBe(true);
    const cp = await vjail(['checkpoint', 'orphan', '--image', join(dir, 'img')]);
    expect(cp.exitCode).toBe(2);
    expect(cp.stderr).toMatch(/jail "orphan" is not running \(gone\)/);
    const kill = await vjail(['kill', 'orphan']);
    expect(kill.exitCode).toBe(2);
    expect(kill.stderr).toMatch(/supervisor of jail "orphan" died/);
    expect((await vjail(['rm', 'orphan'])).exitCode).toBe(0);
    if (s.cgroup) expect(existsSync(s.cgroup.path)).toBe(false);
    // The name is free again.
    await startCounter('orphan', join(dir, 'out2'));
    await vjail(['kill', 'orphan']);
    expect(await waitForState('orphan', /^exited/)).toBe(true);
  });
});

describe('checkpoint and restore of named jails', { timeout: 90_000 }, () => {
  afterAll(() => {
    delete process.env.VJAIL_FREEZER;
  });

  const usable = new Set(describeFreezers().filter((f) => f.present).map((f) => f.kind));

  it.each(['v2', 'v1'] as const)('with the %s freezer chosen: checkpoint NAME, restore --name --detach continues the counter', async (kind) => {
    process.env.VJAIL_FREEZER = kind;
    const dir = mkdtempSync(join(tmpdir(), 'vjail-named-cpt-'));
    const out = join(dir, 'out');
    const img = join(dir, 'image');
    const s = await startCounter(`c-${kind}`, out);
    expect(s.cgroup?.kind).toBe(usable.has(kind) ? kind : undefined);

    const cp = await vjail(['checkpoint', `c-${kind}`, '--image', img]);
    expect(cp.exitCode).toBe(0);
    const step2 = cp.stderr.split('\n').find((l) => l.includes('checkpoint 2/5 freeze:'));
    if (usable.has(kind)) expect(step2).toMatch(new RegExp(`freeze: cgroup ${kind} freezer: 1 task\\(s\\) frozen, process ${s.pid} stopped with ptrace, cgroup thawed$`));
    else expect(step2).toMatch(/freeze: ptrace interrupt \(the jail has no cgroup of its own\)/);
    expect(cp.stderr).toMatch(/checkpoint 5\/5 kill/);
    expect(await waitForState(`c-${kind}`, /^exited \(137\)$/)).toBe(true);
    const before = lines(out);
    expectConsecutive(before);

    started.push(`r-${kind}`);
    const r = await vjail(['restore', img, '--name', `r-${kind}`, '--detach']);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe(`r-${kind}`);
    expect(await waitFor(() => lines(out).length >= before.length + 50, 30_000)).toBe(true);
    const restored = stateOf(`r-${kind}`);
    expect(restored.detached).toBe(true);
    expect(restored.command).toEqual([counter, out]);
    expect(await psState(`r-${kind}`)).toBe('running');
    expect(existsSync(join(stateDir, `r-${kind}`, 'log'))).toBe(true);

    // The restored jail has a cgroup of its own too: checkpoint it again, leaving it running.
    const again = await vjail(['checkpoint', `r-${kind}`, '--image', join(dir, 'image2'), '--leave-running']);
    expect(again.exitCode).toBe(0);
    expect(again.stderr).toMatch(usable.has(kind) ? new RegExp(`freeze: cgroup ${kind} freezer`) : /freeze: ptrace interrupt/);
    const n = lines(out).length;
    expect(await waitFor(() => lines(out).length >= n + 20)).toBe(true);

    expect((await vjail(['kill', `r-${kind}`])).exitCode).toBe(0);
    expect(await waitForState(`r-${kind}`, /^exited \(143\)$/)).toBe(true);
    expectConsecutive(lines(out));
  });

  it('a failed checkpoint leaves the jail running and thawed: image directory exists, or the process is already traced', async () => {
    delete process.env.VJAIL_FREEZER;
    const dir = mkdtempSync(join(tmpdir(), 'vjail-named-cpt-'));
    const out = join(dir, 'out');
    const s = await startCounter('keeps', out);
    const img = join(dir, 'image');
    expect((await vjail(['checkpoint', 'keeps', '--image', img, '--leave-running'])).exitCode).toBe(0);

    // Refused before anything is frozen.
    const exists = await vjail(['checkpoint', 'keeps', '--image', img]);
    expect(exists.exitCode).toBe(2);
    expect(exists.stderr.trim().split('\n')).toHaveLength(1);
    expect(exists.stderr).toMatch(/already exists/);
    let n = lines(out).length;
    expect(await waitFor(() => lines(out).length >= n + 20)).toBe(true);

    // Refused after the freeze: this test holds the process with ptrace, so the checkpoint cannot.
    const pt = ptraceAddon();
    pt.ptraceSeize(s.pid!, 0);
    let failed;
    try {
      failed = await vjail(['checkpoint', 'keeps', '--image', join(dir, 'image2')]);
    } finally {
      // PTRACE_DETACH needs a stop: interrupt, wait for it, then let go.
      pt.ptraceInterrupt(s.pid!);
      pt.ptraceWait(s.pid!, false, 0);
      pt.ptraceResume(s.pid!, 2, 0);
    }
    expect(failed.exitCode).toBe(2);
    expect(failed.stderr).toMatch(new RegExp(`process ${s.pid} is already traced by process ${process.pid}`));
    expect(failed.stderr).not.toMatch(/checkpoint 2\/5 freeze/);
    if (s.cgroup) expect(freezerState(s.cgroup)).toBe('THAWED');
    expect(readdirSync(dir).sort()).toEqual(['image', 'out']);
    n = lines(out).length;
    expect(await waitFor(() => lines(out).length >= n + 20)).toBe(true);
    expect(alive(s.pid!)).toBe(true);
    expect(await psState('keeps')).toBe('running');
    expectConsecutive(lines(out));
    await vjail(['kill', 'keeps']);
    expect(await waitForState('keeps', /^exited/)).toBe(true);
  });
});
