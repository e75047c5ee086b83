import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture } from './helpers/fixtures.js';
import { alive, vjail, vjailStart, waitFor } from './helpers/run.js';

// A failed, interrupted or killed checkpoint never harms the workload: here one
// that takes SIGALRM every millisecond (test/fixtures/alarms.c).

let alarms: string;
let stateDir: string;
const started: string[] = [];

beforeAll(() => {
  alarms = fixture('alarms');
  stateDir = mkdtempSync(join(tmpdir(), 'vjail-state-'));
  process.env.VJAIL_STATE_DIR = stateDir;
});

afterAll(async () => {
  for (const name of started) await vjail(['kill', name, '--signal', 'KILL']);
  delete process.env.VJAIL_STATE_DIR;
});

interface Jail {
  name: string;
  pid: number;
  out: string;
  cgroup: { kind: 'v1' | 'v2'; path: string } | null;
}

interface Status {
  work: number;
  alarms: number;
  unexpected: number;
}

function status(j: Jail): Status | undefined {
  const f = existsSync(j.out) ? readFileSync(j.out, 'utf8').trim().split(' ').map(Number) : [];
  if (f.length !== 3 || f.some((n) => !Number.isInteger(n))) return undefined;
  return { work: f[0]!, alarms: f[1]!, unexpected: f[2]! };
}

function procStatus(pid: number, field: string): string | undefined {
  try {
    return new RegExp(`^${field}:\\s+(\\S+)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}

function frozen(cg: Jail['cgroup']): boolean {
  if (!cg) return false;
  if (cg.kind === 'v2') return /^frozen 1$/m.test(readFileSync(join(cg.path, 'cgroup.events'), 'utf8'));
  return readFileSync(join(cg.path, 'freezer.state'), 'utf8').trim() !== 'THAWED';
}

async function startJail(name: string): Promise<Jail> {
  started.push(name);
  const dir = mkdtempSync(join(tmpdir(), 'vjail-safety-'));
  const out = join(dir, 'status');
  const r = await vjail(['run', '--name', name, '--detach', '--', alarms, out]);
  expect(r.exitCode).toBe(0);
  const state = JSON.parse(readFileSync(join(stateDir, name, 'state.json'), 'utf8'));
  const j: Jail = { name, pid: state.pid, out, cgroup: state.cgroup };
  expect(await waitFor(() => (status(j)?.alarms ?? 0) >= 20, 30_000)).toBe(true);
  return j;
}

/** The workload is as it should be: alive, untraced, thawed, its mask its own, working and taking its alarms, nothing unexpected seen. */
async function expectHealthy(j: Jail, what: string): Promise<void> {
  const before = status(j)!;
  const moved = await waitFor(() => {
    const s = status(j);
    return s !== undefined && s.work >= before.work + 3 && s.alarms >= before.alarms + 3;
  }, 30_000);
  expect(moved, `${what}: the workload goes on (was ${JSON.stringify(before)}, now ${JSON.stringify(status(j))})`).toBe(true);
  expect(alive(j.pid), what).toBe(true);
  expect(status(j)!.unexpected, `${what}: no unexpected signal or state`).toBe(0);
  expect(procStatus(j.pid, 'TracerPid'), `${what}: let go`).toBe('0');
  // Inside its alarm handler SIGALRM is blocked (as the kernel does): a moment later it is not.
  const ownMask = await waitFor(() => procStatus(j.pid, 'SigBlk') === '0000000000000000', 5_000);
  expect(ownMask, `${what}: its own signal mask (now ${procStatus(j.pid, 'SigBlk')})`).toBe(true);
  expect(frozen(j.cgroup), `${what}: cgroup thawed`).toBe(false);
}

/** Resolves once vjail holds the workload (it is traced), or the checkpoint ended. */
async function held(j: Jail, cp: Promise<unknown>): Promise<void> {
  let done = false;
  void cp.finally(() => (done = true));
  while (!done && (procStatus(j.pid, 'TracerPid') ?? '0') === '0') await new Promise((r) => setTimeout(r, 1));
}

// Each checkpoint is a vjail process of its own: on a busy machine a few seconds each.
const LONG = 900_000;

describe('a checkpoint never harms the workload', () => {
  it('100 checkpoints in a row with --leave-running of a workload taking a signal every millisecond', async () => {
    const j = await startJail('alarm-100');
    const images = mkdtempSync(join(tmpdir(), 'vjail-safety-img-'));
    let last = status(j)!;
    for (let i = 0; i < 100; i++) {
      const img = join(images, `image-${i}`);
      const cp = await vjail(['checkpoint', j.name, '--image', img, '--leave-running']);
      expect(cp.exitCode, `checkpoint ${i}: ${cp.stderr}`).toBe(0);
      expect(cp.stderr).toMatch(/checkpoint 5\/5 resume/);
      rmSync(img, { recursive: true });
      await expectHealthy(j, `after checkpoint ${i}`);
      const now = status(j)!;
      expect(now.alarms).toBeGreaterThan(last.alarms);
      last = now;
    }
  }, LONG);

  it('SIGTERM or SIGINT to vjail at varied moments of a checkpoint: it stops in one line, the jail runs on as before', async () => {
    const j = await startJail('alarm-term');
    const images = mkdtempSync(join(tmpdir(), 'vjail-safety-img-'));
    let interrupted = 0;
    for (let i = 0; i < 12; i++) {
      const img = join(images, `image-${i}`);
      const cp = vjailStart(['checkpoint', j.name, '--image', img, '--leave-running']);
      await held(j, cp);
      await new Promise((r) => setTimeout(r, (i * 7) % 60));
      cp.kill(i % 3 === 2 ? 'SIGINT' : 'SIGTERM');
      const r = await cp;
      if (r.exitCode !== 0) {
        interrupted++;
        expect(r.exitCode).toBe(2);
        const last = r.stderr.split('\n').filter(Boolean).at(-1)!;
        expect(last).toMatch(/^vjail: checkpoint interrupted by SIG(TERM|INT); the jail was let go as it was and runs on, no image was written$/);
        expect(existsSync(img)).toBe(false);
      }
      rmSync(img, { recursive: true, force: true });
      await expectHealthy(j, `after the checkpoint signalled in try ${i}`);
    }
    // Most signals land while the jail is held (the rest after the image was published).
    expect(interrupted).toBeGreaterThan(0);
  }, LONG);

  it('SIGKILL of vjail at varied moments of a checkpoint: the guard puts the jail back as it was', async () => {
    const j = await startJail('alarm-kill');
    const images = mkdtempSync(join(tmpdir(), 'vjail-safety-img-'));
    for (let i = 0; i < 20; i++) {
      const img = join(images, `image-${i}`);
      const cp = vjailStart(['checkpoint', j.name, '--image', img, '--leave-running']);
      await held(j, cp);
      await new Promise((r) => setTimeout(r, (i * 13) % 120));
      cp.kill('SIGKILL');
      const r = await cp;
      if (r.exitCode !== 0) expect(r.signal).toBe('SIGKILL');
      // The guard outlives vjail by a moment: it is done once the workload is let go and thawed.
      const letGo = await waitFor(() => procStatus(j.pid, 'TracerPid') === '0' && !frozen(j.cgroup), 10_000);
      expect(letGo, `try ${i}: let go and thawed within 10 s (${alive(j.pid) ? `tracer ${procStatus(j.pid, 'TracerPid')}, frozen ${frozen(j.cgroup)}` : `ended: ${readFileSync(join(stateDir, j.name, 'state.json'), 'utf8')}`}); vjail and its guard said: ${r.stderr}`).toBe(true);
      rmSync(img, { recursive: true, force: true });
      await expectHealthy(j, `after vjail was killed in try ${i}`);
    }
  }, LONG);
});
