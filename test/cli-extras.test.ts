/*
 * Small things a new user meets first: `vjail --version`, `--json` on
 * `profiles` and `check`, the README's `--policy docker-default.json` from
 * any directory, and a detached jail's log kept within `--log-max-size`.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { fixture, vjailBin } from './helpers/fixtures.js';
import { vjail } from './helpers/run.js';

const stateDir = mkdtempSync(join(tmpdir(), 'vjail-extras-state-'));
const env = { ...process.env, VJAIL_STATE_DIR: stateDir };
afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

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
      expect(existsSync(join(dir, 'log.1'))).toBe(true);
      // Storage, not apparent size: the log's head is freed in place (a hole), its size stays.
      const stored = (p: string) => statSync(p).blocks * 512;
      const kept = stored(join(dir, 'log')) + stored(join(dir, 'log.1'));
      // 16 MiB written; the bound twice over plus what is written between two looks stays far below.
      expect(kept).toBeLessThan(8 << 20);
      // Nothing lost at a rotation: the lines printed are consecutive up to the last one.
      const lines = logs.trimEnd().split('\n');
      expect(lines.pop()).toBe('LAST');
      const numbers = lines.map((l) => Number(l.split(' ')[0]));
      expect(numbers.at(-1)).toBe(16383);
      expect(numbers.every((n, i) => i === 0 || n === numbers[i - 1]! + 1)).toBe(true);
      expect(logs).not.toContain('\0');
    } finally {
      await cli(['kill', 'chatty', '--signal', 'KILL']);
      // Bounded: the supervisor records the exit once the jail is gone.
      for (let i = 0; i < 100 && (await cli(['rm', 'chatty'])).exitCode !== 0; i++) await new Promise((r) => setTimeout(r, 100));
    }
  });
});
