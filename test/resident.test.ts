import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { fixture, repoRoot, vjailBin } from './helpers/fixtures.js';
import { residents } from './helpers/resident.js';

/*
 * `vjail run` as a command goes to the native front end (native/vjail-run.c)
 * and a resident supervisor; `node bin/vjail.js run` is the Node CLI. Both
 * must behave the same. Each test file gets a runtime directory of its own,
 * so its residents are its own.
 */

const runtime = mkdtempSync(join(tmpdir(), 'vjail-resident-'));
afterAll(async () => {
  for (const pid of residents(runtime)) process.kill(pid, 'SIGTERM');
  rmSync(runtime, { recursive: true, force: true });
});

const probe = fixture('probe');
const policy = join(repoRoot, 'test/fixtures/policies/docker-default.json');

interface Opts {
  input?: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Start, and let the test signal it. */
  onStart?: (p: ReturnType<typeof execa>) => Promise<void>;
}

function start(fast: boolean, args: string[], opts: Opts = {}) {
  const [file, argv] = fast ? [vjailBin, args] : ['node', [vjailBin, ...args]];
  return execa(file, argv, {
    reject: false,
    input: opts.onStart ? undefined : (opts.input ?? ''),
    cwd: opts.cwd,
    env: { XDG_RUNTIME_DIR: runtime, ...opts.env },
    timeout: 60_000,
  });
}

async function both(args: string[], opts: Opts = {}) {
  const out = [];
  for (const fast of [true, false]) {
    const p = start(fast, args, opts);
    if (opts.onStart) await opts.onStart(p);
    const r = await p;
    out.push({ exitCode: r.exitCode, signal: r.signal, stdout: r.stdout, stderr: r.stderr });
  }
  return { fast: out[0]!, node: out[1]! };
}

function uidOf(pid: number): number {
  return Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

async function waitFor(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`waited 30 s for ${what}`);
}

/** The program that launched vjail-init (the jail's parent's parent): vjail-run or node. */
const LAUNCHER = 'p=$(sed -n "s/^PPid:\\t//p" /proc/$PPID/status); readlink /proc/$p/exe';
/** The same by name: vjail's own processes are not dumpable, so another user cannot read their exe link. */
const LAUNCHER_NAME = 'p=$(sed -n "s/^PPid:\\t//p" /proc/$PPID/status); cat /proc/$p/comm';

describe('vjail run: native front end and Node CLI alike', () => {
  it('the command takes the fast path; node bin/vjail.js the Node CLI', async () => {
    const r = await both(['run', '--', 'sh', '-c', LAUNCHER]);
    expect(r.fast.stdout).toMatch(/\/vjail-run$/);
    expect(r.node.stdout).toBe(readlinkSync('/proc/self/exe'));
    expect(residents(runtime).length).toBe(1);
  });

  it('exit status, and death by SIGKILL, SIGSEGV and the filter (SIGSYS)', async () => {
    for (const [cmd, status] of [
      [['sh', '-c', 'exit 7'], 7],
      [['true'], 0],
      [['sh', '-c', 'kill -KILL $$'], 128 + 9],
      [['sh', '-c', 'kill -SEGV $$'], 128 + 11],
      [[probe, 'x32-getpid'], 128 + 31],
    ] as const) {
      const r = await both(['run', '--', ...cmd]);
      expect(r.fast).toEqual(r.node);
      expect(r.fast.exitCode).toBe(status);
    }
  });

  it('stdin, stdout and stderr are the jail\'s own', async () => {
    const r = await both(['run', '--', 'sh', '-c', 'cat; echo to-err >&2; exit 3'], { input: 'through stdin\n' });
    expect(r.fast).toEqual(r.node);
    expect(r.fast).toMatchObject({ stdout: 'through stdin', stderr: 'to-err', exitCode: 3 });
  });

  it('a syscall the policy denies fails with EPERM; the profile answers uname', async () => {
    const denied = await both(['run', '--policy', policy, '--', probe, 'syscall', '250', '0', '-3', '0']);
    expect(denied.fast).toEqual(denied.node);
    expect(denied.fast.stdout).toBe('ret=-1 errno=EPERM');
    const uname = await both(['run', '--profile', 'linux-4.19', '--', probe, 'uname']);
    expect(uname.fast).toEqual(uname.node);
    expect(uname.fast.stdout).toMatch(/^4\.19\./);
    const shim = await both(['run', '--profile=linux-4.19', '--kernel-files', 'shim', '--pid-ns', '--', 'cat', '/proc/sys/kernel/osrelease']);
    expect(shim.fast).toEqual(shim.node);
    expect(shim.fast.stdout).toMatch(/^4\.19\./);
  });

  it('--stats: the resident sends the table the Node CLI prints, after the jail\'s own output', async () => {
    const r = await both(['run', '--stats', '--profile', 'linux-4.19', '--', 'sh', '-c', `${LAUNCHER_NAME}; uname -r >&2`]);
    expect(r.fast.stdout).toBe('vjail-run');
    expect(r.node.stdout).toBe('node');
    for (const run of [r.fast, r.node]) {
      expect(run.exitCode).toBe(0);
      const lines = run.stderr.split('\n');
      expect(lines[0]).toMatch(/^4\.19\./);
      expect(lines[1]).toMatch(/^syscall +arch +count +mean µs/);
      expect(run.stderr).toMatch(/^uname +x86_64 +1 /m);
      expect(run.stderr).toMatch(/^received by the (native thread|Node loop) at the end/m);
    }
  });

  it('environment, working directory and relative profile paths', async () => {
    const r = await both(['run', '--profile', 'profiles/linux-4.19.json', '--', 'sh', '-c', 'echo "$VJAIL_TEST_VAR $(pwd) $(uname -r)"'], {
      cwd: repoRoot,
      env: { VJAIL_TEST_VAR: 'value with spaces' },
    });
    expect(r.fast).toEqual(r.node);
    expect(r.fast.stdout).toMatch(/^value with spaces \S+ 4\.19\./);
  });

  it('errors: a command not found, a bad profile, an unknown flag, no command; help', async () => {
    for (const args of [
      ['run', '--', 'no-such-command-here'],
      ['run', '--profile', 'no-such-profile', '--', 'true'],
      ['run', '--bogus', '--', 'true'],
      ['run', '--receiver', 'nobody', '--', 'true'],
      ['run', '--'],
      ['run', '--help'],
    ]) {
      const r = await both(args);
      expect(r.fast).toEqual(r.node);
      expect(r.fast.exitCode === 0).toBe(args[1] === '--help');
    }
  });

  it('--stats says who served the jail: the resident (its pid), or why the Node CLI did', async () => {
    const served = await both(['run', '--stats', '--', 'true']);
    expect(served.fast.exitCode).toBe(0);
    const pid = Number(/served by the resident supervisor \(pid (\d+)\)/.exec(served.fast.stderr)?.[1]);
    expect(residents(runtime)).toContain(pid);
    expect(served.node.stderr).not.toMatch(/resident/);
    // The resident cannot plan with a profile that does not exist: it declines, saying why, and the
    // Node CLI then gives its own error for it.
    const declined = await both(['run', '--stats', '--profile', 'no-such-profile', '--', 'true']);
    const [note, ...rest] = declined.fast.stderr.split('\n');
    expect(note).toMatch(/^vjail: not served by the resident supervisor \(.*no-such-profile.*\): the Node CLI runs the jail$/);
    expect({ ...declined.fast, stderr: rest.join('\n') }).toEqual(declined.node);
    expect(declined.node.exitCode).toBe(2);
  });

  it('on a terminal: the jail has it, in the foreground process group', async () => {
    const out = [];
    for (const fast of [true, false]) {
      const cmd = `${fast ? '' : 'node '}${vjailBin} run -- sh -c 'test -t 0 && test -t 1 && echo tty; [ $(ps -o pgid= -p $$) = $(ps -o tpgid= -p $$) ] && echo foreground; ${LAUNCHER}'`;
      // script(1) runs the command on a new pseudo-terminal.
      const r = await execa('script', ['-qec', cmd, '/dev/null'], { env: { XDG_RUNTIME_DIR: runtime }, reject: false, timeout: 60_000 });
      out.push(r.stdout.replace(/\r/g, '').split('\n'));
    }
    expect(out[0]!.slice(0, 2)).toEqual(['tty', 'foreground']);
    expect(out[1]!.slice(0, 2)).toEqual(['tty', 'foreground']);
    expect(out[0]![2]).toMatch(/\/vjail-run$/);
    expect(out[1]![2]).toBe(readlinkSync('/proc/self/exe'));
  });

  it('signals sent to vjail reach the jail', async () => {
    const r = await both(['run', '--', 'sh', '-c', 'trap "echo got-term; exit 3" TERM; echo ready; while :; do sleep 0.05; done'], {
      onStart: async (p) => {
        await new Promise<void>((resolve) => p.stdout!.once('data', () => resolve()));
        p.kill('SIGTERM');
      },
    });
    expect(r.fast).toEqual(r.node);
    expect(r.fast).toMatchObject({ stdout: 'ready\ngot-term', exitCode: 3 });
  });
});

describe('the front end killed', () => {
  it('kill -9 of vjail leaves no jailed process alive; the resident serves on', async () => {
    const p = start(true, ['run', '--', 'sh', '-c', 'sleep 1000 & echo $!; wait'], { onStart: async () => {} });
    const sleeper = Number(await new Promise<string>((resolve) => p.stdout!.once('data', (d: Buffer) => resolve(d.toString()))));
    expect(existsSync(`/proc/${sleeper}`)).toBe(true);
    p.kill('SIGKILL');
    await p;
    await waitFor('the jail to end with its front end', () => !existsSync(`/proc/${sleeper}`) || readFileSync(`/proc/${sleeper}/stat`, 'utf8').includes(') Z'));
    const r = await both(['run', '--', 'sh', '-c', 'exit 4']);
    expect(r.fast).toEqual(r.node);
    expect(r.fast.exitCode).toBe(4);
  });
});

describe('the resident supervisor', () => {
  it('leaves after its idle time and is started again on demand', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-resident-idle-'));
    try {
      const env = { XDG_RUNTIME_DIR: dir, VJAIL_RESIDENT_IDLE_MS: '200' };
      const first = await execa(vjailBin, ['run', '--', 'sh', '-c', LAUNCHER], { env, reject: false });
      expect(first.stdout).toMatch(/\/vjail-run$/);
      const [pid] = residents(dir);
      expect(pid).toBeDefined();
      await waitFor('the idle resident to leave', () => !existsSync(`/proc/${pid}`));
      expect(readdirSync(join(dir, 'vjail', '.resident'))).toEqual([]);
      const again = await execa(vjailBin, ['run', '--', 'sh', '-c', `${LAUNCHER}; exit 5`], { env, reject: false });
      expect(again.stdout).toMatch(/\/vjail-run$/);
      expect(again.exitCode).toBe(5);
      expect(residents(dir).filter((p) => p !== pid).length).toBe(1);
    } finally {
      for (const pid of residents(dir)) process.kill(pid, 'SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps no descriptor of a jail that has ended (one status file and one pidfd per caller were kept before)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-resident-fds-'));
    try {
      const env = { XDG_RUNTIME_DIR: dir };
      // Four processes (sh and three cats), each opening through the open shim answered in C.
      const jail = () =>
        execa(vjailBin, ['run', '--profile', 'linux-4.19', '--kernel-files', 'shim', '--', 'sh', '-c', 'cat /etc/hostname; cat /etc/hostname; cat /etc/hostname'], { env, reject: false, timeout: 60_000 });
      // The kinds kept per caller: Node itself opens others lazily (its thread pool, rings), now and then.
      const fdsOf = (pid: number) =>
        readdirSync(`/proc/${pid}/fd`).filter((fd) => {
          try {
            return /^(anon_inode:\[pidfd\]|\/proc\/\d+\/status)$/.test(readlinkSync(`/proc/${pid}/fd/${fd}`));
          } catch {
            return false;
          }
        }).length;
      expect((await jail()).exitCode).toBe(0);
      const [pid] = residents(dir);
      expect(pid).toBeDefined();
      // A jail's go a moment after its front end has returned, once the resident has seen it hang up: wait (10 s at most).
      const settled = async (): Promise<number> => {
        for (let i = 0; i < 200 && fdsOf(pid!) > 0; i++) await new Promise((r) => setTimeout(r, 50));
        return fdsOf(pid!);
      };
      expect(await settled()).toBe(0);
      for (let i = 0; i < 6; i++) expect((await jail()).exitCode).toBe(0);
      expect(residents(dir)).toEqual([pid]);
      // Leaked, they would be 6 jails × 4 callers × 2.
      expect(await settled()).toBe(0);
    } finally {
      for (const pid of residents(dir)) process.kill(pid, 'SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a socket left by a killed resident is replaced', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-resident-stale-'));
    try {
      const env = { XDG_RUNTIME_DIR: dir };
      expect((await execa(vjailBin, ['run', '--', 'true'], { env, reject: false })).exitCode).toBe(0);
      const [pid] = residents(dir);
      process.kill(pid!, 'SIGKILL');
      await waitFor('the killed resident to be gone', () => !existsSync(`/proc/${pid}`));
      expect(readdirSync(join(dir, 'vjail', '.resident')).length).toBe(1); // its socket, nobody listening
      const r = await execa(vjailBin, ['run', '--', 'sh', '-c', LAUNCHER], { env, reject: false });
      expect(r.stdout).toMatch(/\/vjail-run$/);
      expect(r.exitCode).toBe(0);
      expect(residents(dir).length).toBe(1);
    } finally {
      for (const pid of residents(dir)) process.kill(pid, 'SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('two users do not share one resident, nor reach each other\'s', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-resident-users-'));
    try {
      // Both users given the same runtime directory: it is root's (mode 0700), so nobody may not use it.
      const asNobody = (args: string[], xdg: string) =>
        execa('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', vjailBin, ...args], { env: { XDG_RUNTIME_DIR: xdg }, reject: false });
      expect((await execa(vjailBin, ['run', '--', 'true'], { env: { XDG_RUNTIME_DIR: dir }, reject: false })).exitCode).toBe(0);
      const shared = await asNobody(['run', '--', 'sh', '-c', `${LAUNCHER_NAME}; id -u`], dir);
      // Not the fast path (the directory is not nobody's), yet the same result through the Node CLI.
      expect(shared.stdout).toBe(`${basename(readlinkSync('/proc/self/exe')).slice(0, 15)}\n65534`);
      const own = mkdtempSync(join(tmpdir(), 'vjail-resident-nobody-'));
      chownSync(own, 65534, 65534);
      try {
        const r = await asNobody(['run', '--', 'sh', '-c', `${LAUNCHER_NAME}; id -u`], own);
        expect(r.stdout).toBe('vjail-run\n65534');
        const mine = residents(dir);
        const theirs = residents(own);
        expect(mine.length).toBe(1);
        expect(theirs.length).toBe(1);
        expect(uidOf(mine[0]!)).toBe(process.geteuid!());
        expect(uidOf(theirs[0]!)).toBe(65534);
      } finally {
        for (const pid of residents(own)) process.kill(pid, 'SIGTERM');
        rmSync(own, { recursive: true, force: true });
      }
    } finally {
      for (const pid of residents(dir)) process.kill(pid, 'SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
