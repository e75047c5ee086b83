/**
 * vjail-oci's command line as runc's: a bundle made at test time (spec,
 * edited) run through create/start/state/kill/delete, with the config's
 * process, mounts, namespaces and seccomp honoured.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeBundle, oci, ociLeaving, removeDir } from './helpers/oci.js';

const root = `/run/vjail-oci-test-${process.pid}`;
const bundles: string[] = [];
const id = (name: string) => `${name}-${process.pid}`;

async function bundle(edit: (c: any) => void): Promise<string> {
  const b = await makeBundle(edit);
  bundles.push(b);
  return b;
}

afterAll(() => {
  for (const b of bundles) removeDir(b);
  removeDir(root);
});

describe('vjail-oci commands', () => {
  it('says its version, its features, and writes a spec', async () => {
    const v = await oci(['--version']);
    expect(v.stdout).toMatch(/^vjail-oci version \d+\.\d+\.\d+\nspec: 1\.0\.2/);
    const f = JSON.parse((await oci(['features'])).stdout);
    expect(f.linux.namespaces).toContain('pid');
    expect(f.linux.capabilities).toContain('CAP_SYS_ADMIN');
    const b = await bundle(() => {});
    const again = await oci(['spec', '--bundle', b]);
    expect(again.exitCode).toBe(1);
    expect(again.stderr).toMatch(/config\.json exists/);
  });

  it('runs a container with the config\'s process, and returns its status', async () => {
    const b = await bundle((c) => {
      c.process.args = ['sh', '-c', 'hostname; echo "$A"; id; pwd; umask; grep -E "^(NoNewPrivs|CapEff)" /proc/self/status; ulimit -n; cat /proc/self/oom_score_adj; exit 9'];
      c.process.env.push('A=b c');
      c.process.user = { uid: 1000, gid: 1000, additionalGids: [20, 30], umask: 0o27 };
      // A user other than root keeps capabilities across exec only as ambient ones (inheritable and permitted too).
      c.process.capabilities.inheritable = c.process.capabilities.permitted;
      c.process.cwd = '/tmp';
      c.process.rlimits = [{ type: 'RLIMIT_NOFILE', hard: 200, soft: 100 }];
      c.process.oomScoreAdj = 123;
      c.hostname = 'oci-box';
    });
    const r = await oci(['--root', root, 'run', '--bundle', b, id('run')]);
    expect(r.stderr).toBe('');
    expect(r.stdout.split('\n')).toEqual([
      'oci-box',
      'b c',
      'uid=1000 gid=1000 groups=20,30',
      '/tmp',
      '0027',
      // CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE, as spec grants
      'CapEff:\t0000000020000420',
      'NoNewPrivs:\t1',
      '100',
      '123',
    ]);
    expect(r.exitCode).toBe(9);
    expect(existsSync(join(root, id('run')))).toBe(false);
  });

  it('goes through create, start, state, kill and delete as runc does', async () => {
    const b = await bundle((c) => {
      c.process.args = ['sh', '-c', 'echo started > /tmp/mark; trap "exit 3" TERM; while :; do sleep 0.1; done'];
      c.root.readonly = false;
      c.hooks = { poststop: [{ path: '/bin/sh', args: ['sh', '-c', `cat > ${join('/tmp', `vjail-oci-poststop-${process.pid}`)}`] }] };
    });
    const name = id('life');
    const pidFile = join(b, 'pid');
    const log = join(b, 'log.json');
    const created = await ociLeaving(['--root', root, '--log', log, '--log-format', 'json', '--debug', 'create', '--bundle', b, '--pid-file', pidFile, name], b);
    expect(created.stderr).toBe('');
    expect(created.exitCode).toBe(0);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    let state = JSON.parse((await oci(['--root', root, 'state', name])).stdout);
    expect(state).toMatchObject({ id: name, status: 'created', pid, bundle: b });
    // Nothing of the process ran yet.
    expect(existsSync(join(b, 'rootfs', 'tmp', 'mark'))).toBe(false);

    expect((await oci(['--root', root, 'delete', name])).stderr).toMatch(/is created; stop it first or use --force/);
    expect((await oci(["--root", root, "start", name])).exitCode).toBe(0);
    state = JSON.parse((await oci(['--root', root, 'state', name])).stdout);
    expect(state.status).toBe('running');
    const ps = JSON.parse((await oci(['--root', root, 'ps', '--format', 'json', name])).stdout);
    expect(ps.length).toBeGreaterThan(0);

    expect((await oci(['--root', root, 'pause', name])).exitCode).toBe(0);
    expect(JSON.parse((await oci(['--root', root, 'state', name])).stdout).status).toBe('paused');
    expect((await oci(['--root', root, 'resume', name])).exitCode).toBe(0);

    const ex = await oci(['--root', root, 'exec', name, 'sh', '-c', 'cat /tmp/mark; exit 4']);
    expect(ex.stdout).toBe('started');
    expect(ex.exitCode).toBe(4);

    expect((await oci(['--root', root, 'kill', name, 'TERM'])).exitCode).toBe(0);
    // The monitor (the pid given to engines) exits with the container's status.
    for (;;) {
      state = JSON.parse((await oci(['--root', root, 'state', name])).stdout);
      if (state.status === 'stopped') break;
    }
    const hookOut = join('/tmp', `vjail-oci-poststop-${process.pid}`);
    expect((await oci(['--root', root, 'delete', name])).exitCode).toBe(0);
    expect(JSON.parse(readFileSync(hookOut, 'utf8'))).toMatchObject({ id: name, status: 'stopped' });
    removeDir(hookOut);
    expect((await oci(['--root', root, 'state', name])).stderr).toMatch(/does not exist/);
    const logged = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(logged[0]).toMatchObject({ level: 'debug', msg: expect.stringContaining('create') });
  });

  it('honours the root, masked and read-only paths, devices and sysctls', async () => {
    const b = await bundle((c) => {
      c.process.args = ['sh', '-c', 'touch /x 2>&1; cat /proc/keys | wc -c; { echo 1 > /proc/sys/kernel/ostype; } 2>&1; ls -l /dev/null /dev/vjail-zero | cut -c1; cat /proc/sys/net/ipv4/ip_default_ttl; head -c 4 /dev/vjail-zero | wc -c'];
      c.process.user = { uid: 0, gid: 0 };
      c.linux.devices = [{ path: '/dev/vjail-zero', type: 'c', major: 1, minor: 5, fileMode: 0o666 }];
      c.linux.sysctl = { 'net.ipv4.ip_default_ttl': '42' };
    });
    const r = await oci(['--root', root, 'run', '--bundle', b, id('paths')]);
    expect(r.stdout.split('\n')).toEqual([
      expect.stringMatching(/Read-only file system/),
      '0',
      expect.stringMatching(/Read-only file system/),
      'c',
      'c',
      '42',
      '4',
    ]);
  });

  it('composes linux.seccomp with the profile', async () => {
    const b = await bundle((c) => {
      c.process.args = ['sh', '-c', 'mkdir /tmp/d 2>&1; uname -r'];
      c.root.readonly = false;
      c.annotations = { 'io.vjail.profile': 'linux-4.19' };
      c.linux.seccomp = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 }] };
    });
    const r = await oci(['--root', root, 'run', '--bundle', b, id('seccomp')]);
    expect(r.stdout.split('\n')).toEqual([expect.stringMatching(/Permission denied/), expect.stringMatching(/^4\.19\./)]);
  });

  it('refuses a bad config with one line naming the problem', async () => {
    const b = await bundle((c) => {
      c.process.args = [];
    });
    const r = await ociLeaving(['--root', root, 'create', '--bundle', b, id('bad')], b);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^vjail-oci: .*config\.json: process\.args: process\.args is empty; give the program to run/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    const missing = await bundle((c) => {
      c.process.args = ['/no/such/program'];
    });
    const m = await ociLeaving(['--root', root, 'create', '--bundle', missing, id('missing')], missing);
    expect(m.exitCode).toBe(1);
    expect(m.stderr).toMatch(/exec: "\/no\/such\/program": No such file or directory/);
    expect(existsSync(join(root, id('missing')))).toBe(false);
    writeFileSync(join(missing, 'config.json'), '{');
    expect((await oci(['--root', root, 'create', '--bundle', missing, id('notjson')])).stderr).toMatch(/is not JSON/);
  });
});
