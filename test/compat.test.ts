import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRuntest } from '../src/compat/suite.js';
import { ensureKernel } from '../src/vm/index.js';
import { repoRoot, vjailBin } from './helpers/fixtures.js';
import { vjail } from './helpers/run.js';

interface JsonCase {
  name: string;
  status: string;
  stdout: string;
  reason?: string;
}
interface JsonCell {
  profile: string;
  kernel: string;
  kernelRelease: string;
  profileRelease: string;
  status: string;
  reason?: string;
  output?: string;
  cases: JsonCase[];
}
interface JsonMatrix {
  profiles: string[];
  kernels: { name: string; release: string; heading: string }[];
  cells: JsonCell[];
  failed: number;
}

const RUNTEST = join(repoRoot, 'test', 'compat', 'vjail.runtest');
const hostRelease = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
let scratch: string;

function writeScript(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
  chmodSync(path, 0o755);
}

beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), 'vjail-compat-test-'));
});

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

function cell(m: JsonMatrix, profile: string, kernel: string): JsonCell {
  const c = m.cells.find((x) => x.profile === profile && x.kernel === kernel);
  if (!c) throw new Error(`no cell ${profile} × ${kernel}`);
  return c;
}

/** The table's rows, split into columns. */
function rows(stdout: string): string[][] {
  return stdout
    .split('\n\n')[0]
    .split('\n')
    .map((l) => l.split(/ {2,}/).map((s) => s.trim()));
}

// Two runs, each booting 6.1 and 6.12 once: four boots in all.
describe('vjail compat on host, 6.1 and 6.12', () => {
  const releases: Record<string, string> = {};
  let command: { exitCode?: number; stdout: string; stderr: string; json: JsonMatrix };
  let suite: { exitCode?: number; stdout: string; stderr: string; json: JsonMatrix };

  beforeAll(async () => {
    releases['6.1'] = (await ensureKernel('6.1')).release;
    releases['6.12'] = (await ensureKernel('6.12')).release;
    releases.host = hostRelease;
    const run = async (args: string[], file: string) => {
      const r = await vjail(['compat', '--kernels', 'host,6.1,6.12', '--json-file', join(scratch, file), ...args], { timeoutMs: 600_000 });
      return { ...r, json: JSON.parse(readFileSync(join(scratch, file), 'utf8')) as JsonMatrix };
    };
    command = await run(['--profiles', 'linux-4.19,host', '--', 'uname', '-r'], 'command.json');
    suite = await run(['--profiles', 'linux-4.4,linux-6.12', '--suite', RUNTEST], 'suite.json');
  }, 900_000);

  it('prints a 2×3 matrix of passing cells for uname -r', () => {
    expect(command.stderr).toBe('');
    expect(command.exitCode).toBe(0);
    const table = rows(command.stdout);
    expect(table[0]).toEqual(['profile \\ kernel', `host(${hostRelease.split('.').slice(0, 2).join('.')})`, '6.1', '6.12']);
    expect(table.slice(1).map((r) => r[0])).toEqual(['linux-4.19', 'host']);
    for (const r of table.slice(1)) {
      expect(r).toHaveLength(4);
      for (const c of r.slice(1)) expect(c).toMatch(/^pass \d+\.\d+s$/);
    }
    expect(command.stdout).toContain('6 cells: 6 pass, 0 fail, 0 skip');
  });

  it('shows 4.19 under linux-4.19 and the real kernel under host, in every kernel', () => {
    const m = command.json;
    expect(m.cells).toHaveLength(6);
    for (const k of ['host', '6.1', '6.12']) {
      const release = releases[k];
      expect(cell(m, 'linux-4.19', k).output).toMatch(/^4\.19\./);
      expect(cell(m, 'linux-4.19', k).kernelRelease).toBe(release);
      expect(cell(m, 'host', k).output).toBe(release);
      expect(cell(m, 'host', k).status).toBe('pass');
    }
    expect(releases['6.1']).toMatch(/^6\.1\./);
    expect(releases['6.12']).toMatch(/^6\.12\./);
    expect(m.kernels.map((k) => k.release)).toEqual([hostRelease, releases['6.1'], releases['6.12']]);
  });

  it("passes vjail's own compat suite in every cell", () => {
    expect(suite.stderr).toBe('');
    expect(suite.exitCode).toBe(0);
    expect(suite.stdout).toContain('5 cases in 6 cells: 6 pass, 0 fail, 0 skip');
    for (const c of suite.json.cells) {
      expect(c.status).toBe('pass');
      expect(c.cases.map((x) => x.name)).toEqual(['uname', 'uname-sh', 'statx', 'fchmodat2', 'mseal']);
      expect(c.cases.every((x) => x.status === 'pass')).toBe(true);
    }
  });

  it('ran the suite under the kernel of each column and the profile of each row', () => {
    for (const k of ['host', '6.1', '6.12']) {
      const old = cell(suite.json, 'linux-4.4', k);
      const statx = (c: JsonCell) => c.cases.find((x) => x.name === 'statx')!.stdout;
      expect(old.cases[0].stdout).toBe('uname: 4.4.0-210-generic\n');
      expect(statx(old)).toBe(`statx: ENOSYS under profile 4.4 on ${releases[k]}, as expected\n`);
      expect(statx(cell(suite.json, 'linux-6.12', k))).toBe(`statx: present under profile 6.12 on ${releases[k]}, as expected\n`);
    }
    // mseal (6.10) is missing from the 6.1 kernel whatever the profile says; 6.12 has it.
    const mseal = (k: string) => cell(suite.json, 'linux-6.12', k).cases.find((x) => x.name === 'mseal')!.stdout;
    expect(mseal('6.1')).toMatch(/^mseal: (ENOSYS|present) under profile 6\.12 on 6\.1\./);
    expect(mseal('6.12')).toMatch(/^mseal: present under profile 6\.12 on 6\.12\./);
  });
});

describe('vjail compat on the host kernel', { timeout: 60_000 }, () => {
  it('runs a suite directory: each .c file is compiled and is a case', async () => {
    const r = await vjail(['compat', '--kernels', 'host', '--profiles', 'linux-4.4,host', '--json', '--suite', dirname(RUNTEST)]);
    expect(r.exitCode).toBe(0);
    const m = JSON.parse(r.stdout) as JsonMatrix;
    for (const c of m.cells) {
      expect(c.status).toBe('pass');
      expect(c.cases.map((x) => x.name)).toEqual(['fchmodat2', 'mseal', 'statx', 'uname-release']);
    }
    expect(cell(m, 'host', 'host').cases[3].stdout).toBe(`uname: ${hostRelease}\n`);
  });

  it('fails a cell whose command fails, with the first line it printed, and exits 1', async () => {
    const r = await vjail(['compat', '--kernels', 'host', '--profiles', 'host,linux-4.19', '--', 'sh', '-c', 'echo first problem >&2; echo more >&2; exit 3']);
    expect(r.exitCode).toBe(1);
    expect(rows(r.stdout)[1][1]).toMatch(/^fail \d+\.\d+s$/);
    expect(r.stdout).toMatch(/^host on host\(\d+\.\d+\): fail: exit 3: first problem$/m);
    expect(r.stdout).toMatch(/^linux-4\.19 on host\(\d+\.\d+\): fail: exit 3: first problem$/m);
    expect(r.stdout).toContain('2 cells: 0 pass, 2 fail, 0 skip');
  });

  it('names failing cases of a suite directory of executables', async () => {
    const dir = join(scratch, 'scripts');
    rmSync(dir, { recursive: true, force: true });
    writeScript(join(dir, 'good'), '#!/bin/sh\nexit 0\n');
    writeScript(join(dir, 'old-kernel'), '#!/bin/sh\ncase "$(uname -r)" in 4.*) echo "too old: $(uname -r)"; exit 1;; esac\n');
    writeFileSync(join(dir, 'notes.txt'), 'not executable, not a case\n');
    const r = await vjail(['compat', '--kernels', 'host', '--profiles', 'linux-4.19,host', '--suite', dir]);
    expect(r.exitCode).toBe(1);
    const table = rows(r.stdout);
    expect(table[1][1]).toMatch(/^fail 1\/2 /);
    expect(table[2][1]).toMatch(/^pass 2\/2 /);
    expect(r.stdout).toMatch(/^linux-4\.19 on host\(\d+\.\d+\): fail: old-kernel: exit 1: too old: 4\.19\.0-27-amd64$/m);
  });

  it('says a command that does not exist cannot run', async () => {
    const r = await vjail(['compat', '--kernels', 'host', '--profiles', 'host', '--json', '--', 'no-such-command-here']);
    expect(r.exitCode).toBe(1);
    const c = (JSON.parse(r.stdout) as JsonMatrix).cells[0];
    expect(c.status).toBe('fail');
    expect(c.reason).toBe('cannot run "no-such-command-here": command not found');
  });

  it('kills a case that overstays --timeout and fails it', async () => {
    const r = await vjail(['compat', '--kernels', 'host', '--profiles', 'host', '--timeout', '1', '--', 'sh', '-c', 'sleep 60 & sleep 60']);
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toMatch(/fail: timed out after 1 s \(raise --timeout\)$/m);
  });

  it('skips, with the reason, every cell of a VM kernel that cannot be run', async () => {
    // With nothing but node in PATH no VM kernel can boot; the cells say so and do not fail.
    const bin = join(scratch, 'only-node');
    mkdirSync(bin, { recursive: true });
    symlinkSync(process.execPath, join(bin, 'node'));
    const r = await execa(process.execPath, [vjailBin, 'compat', '--kernels', '6.1', '--profiles', 'host', '--', 'true'], {
      reject: false,
      env: { PATH: bin },
      extendEnv: false,
    });
    expect(r.exitCode).toBe(0);
    expect(rows(r.stdout)[1]).toEqual(['host', 'skip']);
    expect(r.stdout).toContain('6.1: every cell skipped: Linux 6.1 cannot be run: qemu-system-x86_64 is not available; install it');
    expect(r.stdout).toContain('1 cell: 0 pass, 0 fail, 1 skip');
  });
});

describe('vjail compat: bad input', { timeout: 60_000 }, () => {
  const bad: [string, string[], RegExp][] = [
    ['an unknown kernel', ['--kernels', 'host,5.4', '--', 'true'], /^vjail: unknown kernel "5\.4"; choose from host, 6\.1, 6\.12$/],
    ['an unknown profile', ['--profiles', 'linux-9.9', '--', 'true'], /^vjail: unknown profile "linux-9\.9"; choose from host, .*linux-4\.19/],
    ['no command', ['--kernels', 'host'], /^vjail: no command given; usage: vjail compat \[options\] -- CMD/],
    ['a command and a suite', ['--suite', RUNTEST, '--', 'true'], /^vjail: give either a command or --suite, not both$/],
    ['a kernel named twice', ['--kernels', 'host,host', '--', 'true'], /^vjail: kernel "host" is listed twice/],
    ['an empty name', ['--profiles', 'host,', '--', 'true'], /^vjail: --profiles "host," has an empty name/],
    ['a bad timeout', ['--timeout', '0', '--', 'true'], /^vjail: --timeout "0" is not a positive number of seconds/],
    ['a missing suite', ['--suite', '/nonexistent/suite'], /^vjail: suite "\/nonexistent\/suite" does not exist; give a directory/],
  ];
  it.each(bad)('rejects %s with one line and exit 2', async (_what, args, message) => {
    const r = await vjail(['compat', ...args]);
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(message);
    expect(r.stderr.split('\n')).toHaveLength(1);
  });

  it('rejects a runtest line without a command, and a .c file that does not compile', async () => {
    const file = join(scratch, 'broken.runtest');
    writeFileSync(file, '# a comment\nok true\nlonely\n');
    let r = await vjail(['compat', '--kernels', 'host', '--suite', file]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/^vjail: runtest file ".*broken\.runtest" line 3: "lonely" has no command; write "NAME COMMAND \[ARG\.\.\.\]"$/);
    const dir = join(scratch, 'bad-c');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'broken.c'), 'int main(void) { return missing; }\n');
    r = await vjail(['compat', '--kernels', 'host', '--suite', dir]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/^vjail: cannot compile .*broken\.c: .*error.*missing.*; fix the source or remove it from the suite$/);
    expect(r.stderr.split('\n')).toHaveLength(1);
  });
});

describe('runtest files', () => {
  it('read one case per line, the rest of the line a shell command, # lines ignored', () => {
    expect(parseRuntest('# header\n\nuname  uname-release\nsh-case   test "$A" = "b c"  \n', 'f')).toEqual([
      { name: 'uname', argv: ['sh', '-c', 'uname-release'] },
      { name: 'sh-case', argv: ['sh', '-c', 'test "$A" = "b c"'] },
    ]);
    expect(() => parseRuntest('a x\na y\n', 'f')).toThrow('f line 2: case "a" is named twice');
    expect(() => parseRuntest('# only comments\n', 'f')).toThrow('f has no cases');
  });
});
