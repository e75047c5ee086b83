/**
 * vjail-oci in user namespaces: rootless podman (a test user with
 * subordinate IDs, made at test time) runs containers under it, in the user
 * namespace podman runs its runtime in and in ones the config asks for
 * (linux.uidMappings/gidMappings); root runs a bundle with a user namespace
 * of its own; a config that asks for one without maps is refused.
 *
 * The smallest arrangement for rootless podman 4.3 here: the vfs storage
 * driver (no fuse-overlayfs); rlimits and cgroups need no flags. Most tests
 * use `--network none`; one uses podman's default rootless network
 * (slirp4netns), which needs /dev/net/tun open to users, as Debian's udev
 * rules make it (some hosts leave it 0600: the test opens it for its run).
 */
import { chmodSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxRootfs, makeBundle, oci, ociBin, removeDir } from './helpers/oci.js';
import { asUser, dirOwnedBy, type RootlessUser, rootlessUser } from './helpers/rootless.js';

const IMAGE = `localhost/vjail-oci-userns-${process.pid}`;
let user: RootlessUser;
let runtime: string;
const dirs: string[] = [];

const podman = (args: string[]) => asUser(user, runtime, ['podman', '--runtime', ociBin, '--storage-driver', 'vfs', ...args]);
const run = (flags: string[], script: string) => podman(['run', '--rm', '--network', 'none', ...flags, IMAGE, 'sh', '-c', script]);

beforeAll(async () => {
  user = rootlessUser();
  runtime = dirOwnedBy(user, 'vjail-oci-userns-run-');
  const dir = mkdtempSync(join(tmpdir(), 'vjail-oci-userns-image-'));
  dirs.push(dir);
  const tar = join(dir, 'rootfs.tar');
  execFileSync('tar', ['-C', busyboxRootfs(dir), '-cf', tar, '.']);
  chmodSync(dir, 0o755);
  chmodSync(tar, 0o644);
  const r = await podman(['import', tar, IMAGE]);
  if (r.exitCode !== 0) throw new Error(`podman import as ${user.name} failed: ${r.stderr}`);
}, 120_000);

afterAll(async () => {
  await podman(['rmi', '-f', IMAGE]);
  // Podman keeps the first run's runtime and temporary paths in the user's storage and makes them again
  // on later runs (a directory left in /tmp each time): its storage goes with the test.
  await podman(['system', 'reset', '--force']);
  // Rootless podman leaves a process holding its user namespace ("podman pause"): end those of this runtime directory.
  for (const pid of processesWithEnv(user.uid, `XDG_RUNTIME_DIR=${runtime}`)) process.kill(pid, 'SIGKILL');
  for (const d of [...dirs, runtime]) removeDir(d);
});

/** Live processes of user `uid` whose environment holds `entry`. */
function processesWithEnv(uid: number, entry: string): number[] {
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).filter((pid) => {
    try {
      return statSync(`/proc/${pid}`).uid === uid && readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(entry);
    } catch {
      return false; // gone, or a zombie
    }
  });
}

/** /proc/self/uid_map's lines, spaces squeezed. */
const MAP = 'cat /proc/self/uid_map | tr -s " " | sed "s/^ //"';

describe('rootless podman with vjail-oci as its runtime', () => {
  it('the default rootless network (slirp4netns): a published port reaches a server in the container', async () => {
    const tun = statSync('/dev/net/tun').mode & 0o777;
    if ((tun & 0o006) !== 0o006) chmodSync('/dev/net/tun', 0o666);
    const name = `vjail-userns-net-${process.pid}`;
    const port = 20000 + (process.pid % 20000);
    try {
      const started = await podman(['run', '-d', '--name', name, '-p', `127.0.0.1:${port}:8080`, IMAGE, 'sh', '-c',
        'mkdir /www; echo served-from-the-container > /www/index.html; exec httpd -f -p 8080 -h /www']);
      expect(started.stderr).toBe('');
      expect(started.exitCode).toBe(0);
      let body = '';
      for (const end = Date.now() + 30_000; Date.now() < end && body === ''; await new Promise((r) => setTimeout(r, 200))) {
        body = await fetch(`http://127.0.0.1:${port}/index.html`, { signal: AbortSignal.timeout(5_000) }).then((r) => r.text(), () => '');
      }
      expect(body).toBe('served-from-the-container\n');
      // Inside, slirp4netns's tap device holds the address podman gives (10.0.2.100).
      const inside = await podman(['exec', name, 'sh', '-c', 'ip -o -4 addr show dev tap0']);
      expect(inside.stdout).toMatch(/inet 10\.0\.2\.100\//);
    } finally {
      await podman(['rm', '-f', '-t', '0', name]);
      if ((tun & 0o006) !== 0o006) chmodSync('/dev/net/tun', tun);
    }
  });

  it('runs a container that sees its own root, uid 0 inside being the user outside, and gives back its exit status', async () => {
    const r = await run([], `id -u; id -g; ${MAP}; ls /bin/busybox; tr "\\0" " " < /proc/1/cmdline; exit 3`);
    expect(r.stderr).toBe('');
    const lines = r.stdout.split('\n');
    expect(lines.slice(0, 5)).toEqual(['0', '0', `0 ${user.uid} 1`, `1 ${user.subStart} 65536`, '/bin/busybox']);
    expect(lines[5]).toMatch(/vjail-init/);
    expect(r.exitCode).toBe(3);
  });

  it('honours the user namespace of the config (--uidmap/--gidmap: linux.uidMappings and gidMappings)', async () => {
    const r = await run(['--uidmap', '0:1:5000', '--gidmap', '0:1:5000'], `id -u; ${MAP}; stat -c "%u %g" /bin/busybox; exit 4`);
    expect(r.stderr).toBe('');
    // IDs as podman's user namespace (the parent of the container's) numbers them.
    expect(r.stdout.split('\n')).toEqual(['0', '0 1 5000', '0 0']);
    expect(r.exitCode).toBe(4);
  });

  it('--userns keep-id: the user keeps their IDs inside', async () => {
    const r = await run(['--userns', 'keep-id'], 'id -u; id -g');
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(`${user.uid}\n${user.gid}`);
  });

  it('exec joins the container\'s user namespace', async () => {
    const name = `vjail-userns-exec-${process.pid}`;
    const started = await podman(['run', '-d', '--name', name, '--network', 'none', '--uidmap', '0:1:5000', '--gidmap', '0:1:5000', IMAGE, 'sleep', '120']);
    expect(started.exitCode).toBe(0);
    try {
      const r = await podman(['exec', name, 'sh', '-c', `id -u; ${MAP}`]);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('0\n0 1 5000');
      expect(r.exitCode).toBe(0);
    } finally {
      await podman(['rm', '-f', '-t', '0', name]);
    }
  });
});

describe('vjail-oci run by root, a bundle with a user namespace', () => {
  const root = `/run/vjail-oci-userns-test-${process.pid}`;
  afterAll(() => removeDir(root));

  async function bundle(edit: (c: any) => void): Promise<string> {
    const b = await makeBundle(edit);
    dirs.push(b);
    chmodSync(b, 0o755); // the container's root (an unmapped ID outside) walks to its root file system
    return b;
  }

  it('maps the container\'s IDs as linux.uidMappings/gidMappings say', async () => {
    const b = await bundle((c) => {
      c.linux.namespaces.push({ type: 'user' });
      c.linux.uidMappings = [{ containerID: 0, hostID: 300000, size: 65536 }];
      c.linux.gidMappings = [{ containerID: 0, hostID: 300000, size: 65536 }];
      c.process.args = ['sh', '-c', `id -u; ${MAP}; grep CapEff /proc/self/status; exit 6`];
    });
    const r = await oci(['--root', root, 'run', '--bundle', b, `userns-${process.pid}`]);
    expect(r.stderr).toBe('');
    const lines = r.stdout.split('\n');
    expect(lines.slice(0, 2)).toEqual(['0', '0 300000 65536']);
    expect(lines[2]).toMatch(/^CapEff:/);
    expect(r.exitCode).toBe(6);
  });

  it('refuses a user namespace without maps, naming the fix', async () => {
    const b = await bundle((c) => c.linux.namespaces.push({ type: 'user' }));
    const r = await oci(['--root', root, 'run', '--bundle', b, `userns-nomap-${process.pid}`]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/linux\.namespaces has a new user namespace but linux\.uidMappings or linux\.gidMappings is empty; give both/);
  });
});
