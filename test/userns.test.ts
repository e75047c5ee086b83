/**
 * Jails in user namespaces, started by a user without root: `--pid-ns`
 * (a user namespace keeping the user's IDs), `--user-ns` (root inside is
 * the user, the subordinate IDs the rest), checkpoint and restore of a
 * process tree by that user, and what is refused with a one-line error.
 * The user (with subordinate IDs) is made at test time (helpers/rootless.ts).
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dirOwnedBy, type RootlessUser, rootlessUser, vjailAs } from './helpers/rootless.js';
import { fixture } from './helpers/fixtures.js';
import { busyboxRootfs } from './helpers/oci.js';
import { waitFor } from './helpers/run.js';

let user: RootlessUser;
let runtime: string;
let work: string;
const nobody = { name: 'nobody' };
let nobodyRuntime: string;

beforeAll(() => {
  user = rootlessUser();
  runtime = dirOwnedBy(user, 'vjail-userns-run-');
  work = dirOwnedBy(user, 'vjail-userns-');
  nobodyRuntime = dirOwnedBy({ uid: 65534, gid: 65534 }, 'vjail-userns-nobody-');
});

afterAll(async () => {
  for (const name of ['uns-a1', 'uns-b1', 'uns-a2', 'uns-b2', 'uns-sysv-a', 'uns-sysv-b']) await vjailAs(user, runtime, ['kill', name, '--signal', 'KILL']);
  for (const d of [runtime, work, nobodyRuntime]) rmSync(d, { recursive: true, force: true });
});

const SHOW = 'id -u; id -g; echo $$; cat /proc/self/uid_map /proc/self/gid_map | tr -s " " | sed "s/^ //"';

describe('vjail run without root', () => {
  it('--pid-ns: its own PID namespace, in a user namespace where the user keeps their IDs and the subordinate ones are around them', async () => {
    const r = await vjailAs(user, runtime, ['run', '--pid-ns', '--', 'sh', '-c', SHOW]);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    const [uid, gid, pid, ...maps] = r.stdout.split('\n');
    expect([uid, gid, pid]).toEqual([String(user.uid), String(user.gid), '2']);
    const below = `0 ${user.subStart} ${user.uid}`;
    const above = `${user.uid + 1} ${user.subStart + user.uid} ${65536 - user.uid}`;
    expect(maps.slice(0, 3)).toEqual([`${user.uid} ${user.uid} 1`, below, above]);
  });

  it('--pid-ns for a user without subordinate IDs: the user alone is mapped', async () => {
    const r = await vjailAs(nobody, nobodyRuntime, ['run', '--pid-ns', '--', 'sh', '-c', SHOW]);
    expect(r.stderr).toBe('');
    expect(r.stdout.split('\n')).toEqual(['65534', '65534', '2', '65534 65534 1', '65534 65534 1']);
  });

  it('--user-ns: uid 0 inside is the user, with every capability there; files it makes are the user\'s', async () => {
    const file = join(work, 'made-by-root-inside');
    const r = await vjailAs(user, runtime, ['run', '--user-ns', '--', 'sh', '-c', `${SHOW}; grep CapEff /proc/self/status; touch ${file}`]);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines.slice(0, 2)).toEqual(['0', '0']);
    expect(lines.slice(3, 7)).toEqual([`0 ${user.uid} 1`, `1 ${user.subStart} 65536`, `0 ${user.gid} 1`, `1 ${user.subStart} 65536`]);
    expect(lines[7]).toMatch(/^CapEff:\s+0*1f+$/);
    const { execaSync } = await import('execa');
    expect(execaSync('stat', ['-c', '%u', file]).stdout).toBe(String(user.uid));
  });

  it('--user-ns with a profile: the jail is supervised as any other', async () => {
    const r = await vjailAs(user, runtime, ['run', '--user-ns', '--pid-ns', '--profile', 'linux-4.19', '--', 'sh', '-c', 'uname -r; id -u; exit 7']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('4.19.0-27-amd64\n0');
    expect(r.exitCode).toBe(7);
  });
});

describe('a container\'s isolation without root, in a user namespace', () => {
  it('--rootfs, --net none and --hostname: the user keeps their IDs; with --user-ns, root inside', async () => {
    const dir = dirOwnedBy(user, 'vjail-userns-rootfs-');
    try {
      const rootfs = busyboxRootfs(dir);
      const script = 'hostname; id -u; ls /bin/busybox; cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d " "; touch /sys/x 2>/dev/null || echo sys-ro; echo $$';
      const kept = await vjailAs(user, runtime, ['run', '--rootfs', rootfs, '--net', 'none', '--hostname', 'box', '--', '/bin/sh', '-c', script]);
      expect(kept.stderr).toBe('');
      expect(kept.stdout.split('\n')).toEqual(['box', String(user.uid), '/bin/busybox', 'lo', 'sys-ro', '2']);
      // The host's network: sysfs cannot be mounted in this user namespace, the host's /sys is bound in read-only.
      const hostNet = await vjailAs(user, runtime, ['run', '--user-ns', '--rootfs', rootfs, '--', '/bin/sh', '-c', 'id -u; ls /sys/class >/dev/null && echo sys; touch /sys/x 2>/dev/null || echo sys-ro']);
      expect(hostNet.stderr).toBe('');
      expect(hostNet.stdout).toBe('0\nsys\nsys-ro');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Docker\'s policy in a user namespace', () => {
  it('root of its own user namespace (--user-ns) holds CAP_SYS_ADMIN there, so the policy lets it unshare; a jail keeping the user\'s IDs does not', async () => {
    const asRoot = await vjailAs(user, runtime, ['run', '--user-ns', '--policy', 'docker', '--', 'sh', '-c', 'unshare -m true && echo allowed']);
    expect(asRoot.stdout).toBe('allowed');
    expect(asRoot.exitCode).toBe(0);
    const asUser = await vjailAs(user, runtime, ['run', '--pid-ns', '--policy', 'docker', '--', 'sh', '-c', 'unshare -Ur true && echo allowed']);
    expect(asUser.stdout).toBe('');
    expect(asUser.stderr).toMatch(/unshare failed: Operation not permitted/);
    expect(asUser.exitCode).toBe(1);
  });
});

describe('what is refused, with the fix named', () => {
  it('--user-ns for a user without subordinate IDs', async () => {
    const r = await vjailAs(nobody, nobodyRuntime, ['run', '--user-ns', '--', 'true']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toBe('vjail: user nobody has no subordinate user IDs (/etc/subuid) for the jail\'s user namespace; give them some (as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 nobody)');
  });

  it('--user-ns without newuidmap/newgidmap', async () => {
    const r = await vjailAs(user, runtime, ['run', '--user-ns', '--', '/bin/true'], { env: { PATH: '/nonexistent' } });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toBe('vjail: newuidmap and newgidmap are not on PATH; they map subordinate IDs into the jail\'s user namespace: install them (Debian: apt-get install uidmap)');
  });
});

/*
 * A parent and its child share a pipe: the child writes a count into it,
 * the parent reads each number and appends it with its own uid to a file.
 */
const PARENT_AND_CHILD = [
  'import os, sys, time',
  'r, w = os.pipe()',
  'if os.fork() == 0:',
  '    os.close(r)',
  '    n = 0',
  '    while True:',
  '        n += 1',
  '        os.write(w, b"%d\\n" % n)',
  '        time.sleep(0.003)',
  'os.close(w)',
  'out = open(sys.argv[1], "a", buffering=1)',
  'for line in os.fdopen(r):',
  '    out.write("%s %d\\n" % (line.strip(), os.getuid()))',
].join('\n');

const rows = (path: string): [number, number][] =>
  existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => l.split(' ').map(Number) as [number, number]) : [];

describe('checkpoint and restore by a user without root', () => {
  const cases: [string, string[], () => number][] = [
    ['--pid-ns', ['--pid-ns'], () => user.uid],
    ['--user-ns --pid-ns', ['--user-ns', '--pid-ns'], () => 0],
  ];
  it.each(cases)('%s: a parent and child sharing a pipe go on after checkpoint, kill and restore, nothing lost or repeated', async (flags, ns, uidInside) => {
    const tag = ns.length;
    const out = join(work, `counted${tag}`);
    const image = join(work, `image${tag}`);
    const [first, second] = [`uns-a${tag}`, `uns-b${tag}`];
    const started = await vjailAs(user, runtime, ['run', '--name', first, '--detach', ...ns, '--', 'python3', '-c', PARENT_AND_CHILD, out]);
    expect(started.stderr).toBe('');
    expect(started.exitCode).toBe(0);
    expect(await waitFor(() => rows(out).length > 50, 30_000)).toBe(true);

    const cp = await vjailAs(user, runtime, ['checkpoint', first, '--image', image]);
    expect(cp.stderr).toMatch(/dump: 2 process\(es\)/);
    expect(cp.stderr).toMatch(/5\/5 kill/);
    expect(cp.exitCode).toBe(0);
    const m = JSON.parse(readFileSync(join(image, 'manifest.json'), 'utf8'));
    expect(m.userNamespace.uid.own).toBe(uidInside());
    expect(m.processes.map((p: { pid: number }) => p.pid)).toEqual([2, 3]);
    const before = rows(out).length;

    const restored = await vjailAs(user, runtime, ['restore', image, '--name', second, '--detach']);
    expect(restored.stderr).toBe('');
    expect(restored.exitCode).toBe(0);
    const progressed = await waitFor(() => rows(out).length > before + 100, 30_000);
    await vjailAs(user, runtime, ['kill', second, '--signal', 'KILL']);
    expect(progressed).toBe(true);
    const all = rows(out);
    // Every number once, in order (the last line may be cut by the kill), each read by the parent as the same user.
    const whole = all.slice(0, -1);
    expect(whole.map(([n]) => n)).toEqual(whole.map((_, i) => i + 1));
    expect(new Set(whole.map(([, uid]) => uid))).toEqual(new Set([uidInside()]));
  });
});

describe('System V IPC of a jail checkpointed without root', () => {
  it('shared memory, semaphores and messages come back (the namespace joined through its user namespace, the segment read as our own memory)', async () => {
    const out = join(work, 'sysv');
    const lines = (): string[] => (existsSync(out) ? readFileSync(out, 'utf8').split('\n').filter(Boolean) : []);
    const started = await vjailAs(user, runtime, ['run', '--name', 'uns-sysv-a', '--detach', '--pid-ns', '--', fixture('shmworkers'), 'sysv', out]);
    expect(started.exitCode).toBe(0);
    expect(await waitFor(() => lines().length >= 20, 30_000)).toBe(true);
    const image = join(work, 'image-sysv');
    const cp = await vjailAs(user, runtime, ['checkpoint', 'uns-sysv-a', '--image', image]);
    expect(cp.stderr).toMatch(/3 shared-memory object\(s\)/);
    expect(cp.exitCode).toBe(0);
    const before = lines().length;
    const restored = await vjailAs(user, runtime, ['restore', image, '--name', 'uns-sysv-b', '--detach']);
    expect(restored.exitCode).toBe(0);
    expect(await waitFor(() => lines().length >= before + 20, 30_000)).toBe(true);
    writeFileSync(`${out}.stop`, '');
    expect(await waitFor(() => lines().at(-1) === 'final done', 30_000)).toBe(true);
    const rounds = lines().filter((l) => !l.startsWith('final'));
    rounds.forEach((l, i) => expect(l).toMatch(new RegExp(`^${i + 1} ok \\d+ /SYSV00005150_\\(deleted\\) rw-s .* sem=7,0,42 semid=1 msgid=1 qnum=3 idle=3 shmmode=640$`)));
    expect(lines().filter((l) => l.startsWith('final'))).toEqual(['final message 1 hello-1', 'final message 2 hello-2', 'final message 3 hello-3', 'final idle 77 0', 'final done']);
  });
});
