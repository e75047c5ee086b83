import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { vjailBin } from './helpers/fixtures.js';
import { busyboxRootfs } from './helpers/oci.js';
import { residents } from './helpers/resident.js';

/*
 * `vjail run --rootfs/--net/--hostname`: a container's isolation without an
 * engine, on the fast path (the command: native front end and resident) and
 * the Node CLI alike. The root is busybox-static, made at test time.
 */

const dir = mkdtempSync(join(tmpdir(), 'vjail-isolation-'));
const rootfs = busyboxRootfs(dir);
const runtime = mkdtempSync(join(tmpdir(), 'vjail-isolation-runtime-'));
afterAll(() => {
  for (const pid of residents(runtime)) process.kill(pid, 'SIGTERM');
  rmSync(dir, { recursive: true, force: true });
  rmSync(runtime, { recursive: true, force: true });
});

function start(fast: boolean, args: string[]) {
  const [file, argv] = fast ? [vjailBin, args] : ['node', [vjailBin, ...args]];
  return execa(file, argv, { reject: false, input: '', env: { XDG_RUNTIME_DIR: runtime }, timeout: 60_000 });
}

/**
 * The same run through the fast path and the Node CLI: their results must be
 * equal. With `launcher`, the command's last line names the program that
 * launched the jail: it is checked (vjail-run, then node) and left out.
 */
async function both(args: string[], opts: { launcher?: boolean } = {}) {
  const out = [];
  for (const fast of [true, false]) {
    const r = await start(fast, args);
    let stdout = r.stdout;
    if (opts.launcher) {
      const lines = stdout.split('\n');
      expect(lines.pop()).toMatch(fast ? /\/vjail-run$/ : /\/node$/);
      stdout = lines.join('\n');
    }
    out.push({ exitCode: r.exitCode, stdout, stderr: r.stderr });
  }
  expect(out[0]).toEqual(out[1]);
  return out[0]!;
}

/** The program that launched vjail-init (the jail's parent's parent), seen without a PID namespace. */
const LAUNCHER = 'p=$(sed -n "s/^PPid:\\t//p" /proc/$PPID/status); readlink /proc/$p/exe';

describe('vjail run --rootfs', () => {
  it('the directory is the root, with a container\'s /proc, /dev, /sys and /tmp, and its own PID 1', async () => {
    const script = [
      'ls /',
      'test -e /usr && echo host-usr-visible',
      'echo pid $$',
      'sed -n "s/^Name:\\t//p" /proc/1/status',
      'ls /dev',
      'echo zero > /dev/null && head -c 3 /dev/zero | od -An -tx1',
      'grep -E " /(proc|sys|tmp|dev) " /proc/mounts | cut -d" " -f2-4',
      'touch /tmp/w && echo tmp-writable',
      'touch /sys/x 2>/dev/null || echo sys-read-only',
      'pwd',
    ].join('; ');
    const r = await both(['run', '--rootfs', rootfs, '--', '/bin/sh', '-c', script]);
    expect(r.exitCode).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines.slice(0, 6)).toEqual(['bin', 'dev', 'etc', 'proc', 'sys', 'tmp']);
    expect(r.stdout).not.toContain('host-usr-visible');
    expect(lines).toContain('pid 2');
    expect(lines).toContain('vjail-init');
    for (const d of ['null', 'zero', 'full', 'random', 'urandom', 'tty', 'pts', 'shm', 'ptmx', 'fd']) expect(lines).toContain(d);
    expect(lines).toContain(' 00 00 00');
    expect(lines).toContain('/proc proc rw,relatime');
    expect(lines).toContain('/dev tmpfs rw,nosuid,size=65536k,mode=755');
    expect(lines).toContain('/tmp tmpfs rw,nosuid,nodev,relatime');
    expect(lines.some((l) => /^\/sys sysfs ro,/.test(l))).toBe(true);
    expect(lines).toContain('tmp-writable');
    expect(lines).toContain('sys-read-only');
    expect(lines.at(-1)).toBe('/');
    expect(residents(runtime).length).toBe(1);
  });

  it('a profile\'s kernel files are presented inside the root', async () => {
    const r = await both(['run', '--rootfs', rootfs, '--profile', 'linux-4.19', '--', '/bin/sh', '-c', 'cat /proc/sys/kernel/osrelease; uname -r']);
    expect(r.exitCode).toBe(0);
    const [file, uname] = r.stdout.split('\n');
    expect(file).toMatch(/^4\.19\./);
    expect(uname).toBe(file);
  });

  it('a command not in the root is not found there', async () => {
    const r = await both(['run', '--rootfs', rootfs, '--', '/usr/bin/env', 'true']);
    expect(r.exitCode).toBe(127);
    expect(r.stderr).toBe('vjail: cannot run "/usr/bin/env": command not found');
  });
});

/** Host pids of processes whose command line is exactly `argv`. */
function pidsOf(argv: string[]): number[] {
  const want = `${argv.join('\0')}\0`;
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .filter((e) => {
      try {
        return readFileSync(`/proc/${e}/cmdline`, 'utf8') === want;
      } catch {
        return false;
      }
    })
    .map(Number);
}

describe('checkpoint of an isolated jail', () => {
  it('is refused before anything is stopped, and the jail runs on', async () => {
    for (const flags of [['--rootfs', rootfs], ['--hostname', 'box3', '--pid-ns']]) {
      const marker = ['/bin/sleep', `${40 + Math.random()}`.slice(0, 8)];
      const jail = execa('node', [vjailBin, 'run', ...flags, '--', ...marker], { reject: false, input: '' });
      let pid: number | undefined;
      for (let i = 0; i < 200 && pid === undefined; i++) {
        pid = pidsOf(marker)[0];
        if (pid === undefined) await new Promise((r) => setTimeout(r, 50));
      }
      expect(pid).toBeDefined();
      const cp = await execa('node', [vjailBin, 'checkpoint', '--pid', String(pid), '--image', join(dir, 'image')], { reject: false });
      expect(cp.exitCode).toBe(2);
      expect(cp.stderr).toBe('vjail: the jail was started with --rootfs, --net none or --hostname; such a jail cannot be checkpointed yet (its root and namespaces would not come back)');
      expect(readFileSync(`/proc/${pid}/stat`, 'utf8')).toMatch(/^\d+ \(sleep\) S /);
      jail.kill('SIGTERM');
      expect((await jail).exitCode).toBe(128 + 15);
    }
  });
});

describe('vjail run --net and --hostname', () => {
  it('--net none: the jail sees only loopback, and it is up; --net host: the host\'s interfaces', async () => {
    const none = await both(['run', '--rootfs', rootfs, '--net', 'none', '--', '/bin/sh', '-c', 'ip -o link | cut -d" " -f2,3']);
    expect(none).toMatchObject({ exitCode: 0, stdout: 'lo: <LOOPBACK,UP,LOWER_UP>' });
    // Without a root of its own (the host's tools, the host's /proc): the same namespace.
    const bare = await both(['run', '--net', 'none', '--', 'sh', '-c', `sed -n "s/^ *\\([a-z0-9]*\\):.*/\\1/p" /proc/net/dev; ${LAUNCHER}`], { launcher: true });
    expect(bare.stdout).toBe('lo');
    const host = await both(['run', '--net', 'host', '--', 'sh', '-c', 'sed -n "s/^ *\\([a-z0-9]*\\):.*/\\1/p" /proc/net/dev | wc -l']);
    const hostCount = (await execa('sh', ['-c', 'sed -n "s/^ *\\([a-z0-9]*\\):.*/\\1/p" /proc/net/dev | wc -l'])).stdout;
    expect(host.stdout).toBe(hostCount);
    expect(Number(hostCount)).toBeGreaterThan(1);
  });

  it('--hostname: the jail\'s own UTS namespace; the host\'s name is unchanged', async () => {
    const r = await both(['run', '--hostname', 'box1', '--', 'sh', '-c', `hostname; ${LAUNCHER}`], { launcher: true });
    expect(r.stdout).toBe('box1');
    expect(hostname()).not.toBe('box1');
    const inRoot = await both(['run', '--rootfs', rootfs, '--hostname', 'box2', '--net', 'none', '--', '/bin/hostname']);
    expect(inRoot.stdout).toBe('box2');
  });

  it('errors: a root that is no directory, a bad host name or network, --name, and a user who is not root', async () => {
    for (const [args, message] of [
      [['--rootfs', join(dir, 'nope')], /^vjail: --rootfs \S+nope: not a directory; give the directory/],
      [['--hostname', 'a b'], /^vjail: --hostname "a b": not a host name/],
      [['--net', 'bridge'], /^vjail: option '--net <net>' argument 'bridge' is invalid\. Allowed choices are none, host\./],
      [['--rootfs', rootfs, '--name', 'iso'], /^vjail: --rootfs, --net none and --hostname do not go with --name yet/],
    ] as const) {
      const r = await both(['run', ...args, '--', 'true']);
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toMatch(message);
    }
    // A root whose /proc is a file: its setup fails before the command runs, and says which step.
    const bad = join(dir, 'bad-root');
    mkdirSync(bad);
    writeFileSync(join(bad, 'proc'), '');
    const failed = await both(['run', '--rootfs', bad, '--', '/bin/true']);
    expect(failed.exitCode).toBe(2);
    expect(failed.stderr).toBe('vjail: could not start the jail: setting up the root file system (--rootfs: its mounts, devices and pivot_root; needs root or CAP_SYS_ADMIN) failed (errno 20)');
    // Without root the namespaces are a user namespace's (the user keeping their IDs): test/userns.test.ts.
    const nobody = await execa('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'node', vjailBin, 'run', '--hostname', 'x', '--', 'sh', '-c', 'hostname; id -u'], { reject: false, cwd: '/' });
    expect(nobody.stderr).toBe('');
    expect(nobody.stdout).toBe('x\n65534');
  });
});
