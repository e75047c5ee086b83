/*
 * Small things a new user meets first: `vjail --version`, `--json` on
 * `profiles` and `check`, the README's `--policy docker-default.json` from
 * any directory, and a detached jail's log kept within `--log-max-size`
 * (also across a checkpoint and restore).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { READ_BYTES } from '../src/jails/log-size.js';
import { fixture, vjailBin } from './helpers/fixtures.js';
import { alive, vjail, waitFor } from './helpers/run.js';

const stateDir = mkdtempSync(join(tmpdir(), 'vjail-extras-state-'));
const env = { ...process.env, VJAIL_STATE_DIR: stateDir };
// A test that ran out of time leaves its jail running (its own clean-up comes after this): end every jail here first.
afterAll(async () => {
  const ps = await cli(['ps', '--json']);
  for (const j of JSON.parse(ps.stdout || '[]') as { name: string; state: string }[]) {
    if (j.state === 'running' || j.state === 'starting' || j.state === 'ending') await cli(['kill', j.name, '--signal', 'KILL']);
  }
  for (let i = 0; i < 20 && (JSON.parse((await cli(['ps', '--json'])).stdout || '[]') as { state: string }[]).some((j) => j.state === 'running' || j.state === 'starting' || j.state === 'ending'); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const j of JSON.parse((await cli(['ps', '--json'])).stdout || '[]') as { name: string }[]) await cli(['rm', j.name]);
  rmSync(stateDir, { recursive: true, force: true });
});

/** The CLI with this test's own state directory, run from `cwd`. */
const cli = (args: string[], cwd?: string) => execa('node', [vjailBin, ...args], { reject: false, env, cwd, timeout: 120_000 });

describe('vjail --version', () => {
  it("prints the package's version and exits 0", async () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const r = await vjail([flag]);
      expect(r.exitCode).toBe(0);
      expect(r.stdout).toBe(`vjail ${pkg.version}`);
    }
  });
});

describe('--json', () => {
  it('check --json: host, features, the profile, its emulations and warnings, as one object', async () => {
    const r = await vjail(['check', '--profile', 'linux-5.4', '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as { host: { release: string }; features: { name: string; present: boolean }[]; profile: { name: string; kernel: string }; emulations: Record<string, string[]>; warnings: string[] };
    expect(j.host.release).toBe(readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim());
    expect(j.features.find((f) => f.name === 'seccomp user notification')?.present).toBe(true);
    expect(j.profile).toEqual({ name: 'linux-5.4', kernel: '5.4' });
    expect(j.emulations.uname).toContain('uname');
    expect(j.warnings.some((w) => w.startsWith('io_uring:'))).toBe(true);
  });

  it('profiles list/show/diff --json', async () => {
    const list = JSON.parse((await vjail(['profiles', 'list', '--json'])).stdout) as { name: string; kernel: string; host: boolean }[];
    expect(list.find((p) => p.name === 'linux-4.19')).toMatchObject({ kernel: '4.19', host: false });
    expect(list.find((p) => p.name === 'host')?.host).toBe(true);

    const show = JSON.parse((await vjail(['profiles', 'show', 'linux-4.19', '--json'])).stdout) as {
      name: string;
      uname: { release: string };
      plan: { arches: { arch: string; syscalls: { name: string; action: string }[] }[]; x32: string };
    };
    expect(show.name).toBe('linux-4.19');
    expect(show.uname.release).toBe('4.19.0-27-amd64');
    const x86 = show.plan.arches.find((a) => a.arch === 'x86_64')!;
    expect(x86.syscalls.find((s) => s.name === 'statx')?.action).toBe('allow');
    expect(x86.syscalls.find((s) => s.name === 'openat2')?.action).toBe('errno 38');
    expect(show.plan.x32).toBe('kill');

    const diff = JSON.parse((await vjail(['profiles', 'diff', 'linux-4.19', 'linux-5.4', '--json'])).stdout) as { added: { name: string }[]; removed: unknown[] };
    expect(diff.added.map((a) => a.name)).toContain('pidfd_send_signal');
    expect(diff.removed).toEqual([]);
  });
});

describe("the README's policy example", () => {
  it('--policy docker-default.json works from any directory (the policy shipped with vjail) and enforces it', async () => {
    const elsewhere = mkdtempSync(join(tmpdir(), 'vjail-readme-'));
    try {
      const ok = await cli(['run', '--policy', 'docker-default.json', '--', 'sh', '-c', 'echo ok'], elsewhere);
      expect(ok.exitCode, ok.stderr).toBe(0);
      expect(ok.stdout).toBe('ok');
      // keyctl is not in Docker's allow list: EPERM.
      const denied = await cli(['run', '--policy', 'docker-default', '--', fixture('probe'), 'syscall', '250', '0', '-3', '0'], elsewhere);
      expect(denied.stdout).toBe('ret=-1 errno=EPERM');
      const absent = await cli(['run', '--policy', 'nope.json', '--', 'true'], elsewhere);
      expect(absent.exitCode).toBe(2);
      expect(absent.stderr).toMatch(/^vjail: nope\.json: the policy file cannot be read \(ENOENT\); .* shipped with vjail \(docker-default\.json\)$/);
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }
  });
});

describe('--log-max-size', () => {
  it('refuses a bad size and a foreground jail in one line, exit 2', async () => {
    const bad = await cli(['run', '--name', 'x', '--detach', '--log-max-size', 'lots', '--', 'true']);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toBe('vjail: --log-max-size "lots" is not a size of at least 4k; give bytes or a number with k, M or G, e.g. 10M');
    const fg = await cli(['run', '--log-max-size', '1M', '--', 'true']);
    expect(fg.exitCode).toBe(2);
    expect(fg.stderr).toBe('vjail: --log-max-size bounds the log of a detached jail; add --name NAME --detach, or drop it');
  });

  it("keeps a detached jail's log within the bound while it writes 16 MiB, the newest output kept", async () => {
    // 16384 lines of 1 KiB, then a last line, then it waits to be killed.
    const script = 'l=$(head -c 1023 /dev/zero | tr "\\0" x); i=0; while [ $i -lt 16384 ]; do echo "$i $l"; i=$((i+1)); done; echo LAST; exec sleep 600';
    const start = await cli(['run', '--name', 'chatty', '--detach', '--log-max-size', '256k', '--', 'sh', '-c', script]);
    expect(start.exitCode, start.stderr).toBe(0);
    try {
      // Bounded wait for the last line (the jail writes 16 MiB first).
      let logs = '';
      for (let i = 0; i < 600 && !logs.includes('LAST'); i++) {
        logs = (await cli(['logs', 'chatty'])).stdout;
        if (!logs.includes('LAST')) await new Promise((r) => setTimeout(r, 100));
      }
      expect(logs, 'the jail did not write its last line within 60 s').toContain('LAST');
      const dir = join(stateDir, 'chatty');
      expect(existsSync(join(dir, 'log.1')), 'the log was never rotated').toBe(true);
      // Storage, not apparent size: the log's head is freed in place (a hole), its size stays.
      const stored = (p: string) => statSync(p).blocks * 512;
      const kept = stored(join(dir, 'log')) + stored(join(dir, 'log.1'));
      // 16 MiB written. The supervisor rotates as soon as an append passes the bound: the live part and
      // log.1 hold at most the bound and one read of the pipe each (+ a block the hole punch leaves).
      expect(kept).toBeLessThanOrEqual(2 * (256 * 1024 + READ_BYTES) + 4096);
      // Nothing lost at a rotation: the lines printed are consecutive up to the last one.
      const lines = logs.trimEnd().split('\n');
      expect(lines.pop()).toBe('LAST');
      const numbers = lines.map((l) => Number(l.split(' ')[0]));
      expect(numbers.at(-1)).toBe(16383);
      const gap = numbers.findIndex((n, i) => i > 0 && n !== numbers[i - 1]! + 1);
      expect(gap, `line ${gap} does not follow the one before: ${JSON.stringify(lines.slice(Math.max(0, gap - 1), gap + 1).map((l) => l.slice(0, 40)))}`).toBe(-1);
      expect(logs).not.toContain('\0');
    } finally {
      await cli(['kill', 'chatty', '--signal', 'KILL']);
      // Bounded: the supervisor records the exit once the jail is gone.
      for (let i = 0; i < 100 && (await cli(['rm', 'chatty'])).exitCode !== 0; i++) await new Promise((r) => setTimeout(r, 100));
    }
  });

  // A dozen vjail commands, each bounded: on a loaded host they take seconds each.
  it('a checkpoint by name of a detached jail with a bounded log restores it with its output going on into the log', { timeout: 180_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-logpipe-'));
    const image = join(dir, 'image');
    const log = join(stateDir, 'ticker', 'log');
    const logs = async (name: string) => (await cli(['logs', name])).stdout;
    const lastTick = (text: string) => Number(/tick (\d+) 0+\n?$/.exec(text)?.[1] ?? -1);
    const ticks = (text: string) => text.trimEnd().split('\n').map((l) => Number(l.split(' ')[1]));
    // Stop and forget the jail, waiting (bounded) for its supervisor to record the exit.
    const remove = async (name: string) => {
      await cli(['kill', name, '--signal', 'KILL']);
      for (let i = 0; i < 100 && (await cli(['rm', name])).exitCode !== 0; i++) await new Promise((r) => setTimeout(r, 100));
    };
    // Lines of 110 bytes: a 4k log rotates every 40 or so. One process that never forks: a checkpoint finds none mid-exit.
    const script = 'import itertools, time\nfor i in itertools.count():\n    print(f"tick {i} {0:0100d}", flush=True)\n    time.sleep(0.02)';
    const start = await cli(['run', '--name', 'ticker', '--pid-ns', '--detach', '--log-max-size', '4k', '--', 'python3', '-c', script]);
    expect(start.exitCode, start.stderr).toBe(0);
    try {
      // Its output is a pipe, not the log file: the jail's stdout and stderr are its supervisor's pipe.
      expect(await waitFor(() => existsSync(log) && readFileSync(log, 'utf8').includes('tick 20'), 30_000), 'the jail did not write "tick 20" within 30 s').toBe(true);
      // By its pid as by its name: the pipe to its supervisor is the jail's own output, not state outside.
      const { pid } = JSON.parse(readFileSync(join(stateDir, 'ticker', 'state.json'), 'utf8')) as { pid: number };
      const byPid = await cli(['checkpoint', '--pid', String(pid), '--image', `${image}-by-pid`, '--leave-running']);
      expect(byPid.exitCode, byPid.stderr).toBe(0);
      const cp = await cli(['checkpoint', 'ticker', '--image', image]);
      expect(cp.exitCode, cp.stderr).toBe(0);
      // Once its supervisor records the end, everything the jail wrote before the checkpoint is in the log.
      const state = join(stateDir, 'ticker', 'state.json');
      expect(await waitFor(() => JSON.parse(readFileSync(state, 'utf8')).status === 'exited', 30_000), 'the supervisor did not record the end within 30 s').toBe(true);
      const before = lastTick(await logs('ticker'));
      expect(before).toBeGreaterThanOrEqual(20);
      await remove('ticker');
      const restored = await cli(['restore', image, '--name', 'ticker', '--detach', '--log-max-size', '4k']);
      expect(restored.exitCode, restored.stderr).toBe(0);
      // The restored jail writes on from where it was, into its new supervisor's log (seen before it first rotates).
      const rotated = join(stateDir, 'ticker', 'log.1');
      let first: number[] = [];
      const wroteOn = () => !existsSync(rotated) && existsSync(log) && lastTick(readFileSync(log, 'utf8')) > before + 3 && (first = ticks(readFileSync(log, 'utf8'))).length > 0;
      expect(await waitFor(wroteOn, 30_000), `the restored jail did not write past "tick ${before + 3}" into a log not yet rotated within 30 s`).toBe(true);
      expect(first[0]).toBe(before + 1);
      // ... kept within the bound, nothing lost at its rotations.
      expect(await waitFor(() => existsSync(rotated) && lastTick(readFileSync(log, 'utf8')) > before + 100, 60_000), `the restored jail did not write past "tick ${before + 100}" within 60 s`).toBe(true);
      const after = ticks(await logs('ticker'));
      const gap = after.findIndex((n, i) => i > 0 && n !== after[i - 1]! + 1);
      expect(gap, `tick ${after[gap]} follows tick ${after[gap - 1]}`).toBe(-1);
      const stored = (p: string) => statSync(p).blocks * 512;
      expect(stored(log) + stored(rotated)).toBeLessThanOrEqual(2 * (4096 + READ_BYTES) + 4096);
    } finally {
      await remove('ticker');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a detached jail whose supervisor dies ends with it, and what it wrote through the log pipe is still in its log", async () => {
    const script = 'import itertools, time\nfor i in itertools.count():\n    print(f"line {i}", flush=True)\n    time.sleep(0.02)';
    const start = await cli(['run', '--name', 'orphaned', '--detach', '--log-max-size', '4k', '--', 'python3', '-c', script]);
    expect(start.exitCode, start.stderr).toBe(0);
    const dir = join(stateDir, 'orphaned');
    try {
      expect(await waitFor(() => readFileSync(join(dir, 'log'), 'utf8').includes('line 10\n'), 30_000), 'the jail did not write "line 10" within 30 s').toBe(true);
      const s = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as { supervisorPid: number; pid: number };
      process.kill(s.supervisorPid, 'SIGKILL');
      // vjail-init ends the jail with its supervisor: it never writes into a pipe nobody reads.
      expect(await waitFor(() => !alive(s.pid), 10_000), `the jail (pid ${s.pid}) outlived its supervisor by 10 s`).toBe(true);
      const logs = await cli(['logs', 'orphaned']);
      expect(logs.exitCode, logs.stderr).toBe(0);
      expect(logs.stdout).toMatch(/^line 10$/m);
    } finally {
      for (let i = 0; i < 100 && (await cli(['rm', 'orphaned'])).exitCode !== 0; i++) await new Promise((r) => setTimeout(r, 100));
    }
  });
});
