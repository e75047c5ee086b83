import { chownSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { jailCapabilities, parseCapabilityState } from '../src/policy/capabilities.js';
import { ALL_CAPABILITIES } from '../src/policy/oci.js';
import { repoRoot, vjailBin } from './helpers/fixtures.js';
import { makeBundle, oci } from './helpers/oci.js';
import { residents } from './helpers/resident.js';

/*
 * `--policy docker`: Docker's default profile, its capability conditions
 * evaluated with the capabilities the jail holds, as Docker evaluates them with
 * the container's. unshare, mount and setns are allowed only with
 * CAP_SYS_ADMIN; without it, even a call the kernel would allow an
 * unprivileged user (a new user namespace) is refused with EPERM.
 */

/** Runtime directories (the residents' sockets) of root and of nobody, each its own. */
const runtimes = { root: mkdtempSync(join(tmpdir(), 'vjail-policy-caps-')), nobody: mkdtempSync(join(tmpdir(), 'vjail-policy-caps-nobody-')) };
chownSync(runtimes.nobody, 65534, 65534);
afterAll(() => {
  for (const dir of Object.values(runtimes)) {
    for (const pid of residents(dir)) process.kill(pid, 'SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A new user namespace (any user may make one) and a new mount namespace (CAP_SYS_ADMIN): "ok" or the error. */
const UNSHARE = 'unshare -U true 2>&1 && echo user-ok; unshare -m true 2>&1 && echo mount-ok; true';

/** vjail run through the fast path (the command) or the Node CLI, as the user `setpriv` args make. */
async function runAs(setpriv: string[], fast: boolean, args: string[]) {
  const cmd = fast ? [vjailBin, ...args] : ['node', vjailBin, ...args];
  const [file, argv] = setpriv.length ? ['setpriv', [...setpriv, ...cmd]] : [cmd[0]!, cmd.slice(1)];
  const runtime = setpriv.includes('--reuid=nobody') ? runtimes.nobody : runtimes.root;
  const r = await execa(file, argv, { reject: false, cwd: '/', env: { XDG_RUNTIME_DIR: runtime }, timeout: 60_000, input: '' });
  return { exitCode: r.exitCode, stdout: r.stdout };
}

const NOBODY = ['--reuid=nobody', '--regid=nogroup', '--clear-groups'];

describe('vjail run --policy docker: conditions on the jail\'s capabilities', () => {
  it('as nobody (no capabilities): unshare is refused, though the kernel allows a user namespace without the policy', async () => {
    for (const fast of [true, false]) {
      const bare = await runAs(NOBODY, fast, ['run', '--', 'sh', '-c', UNSHARE]);
      expect(bare.stdout).toBe('user-ok\nunshare: unshare failed: Operation not permitted');
      const docker = await runAs(NOBODY, fast, ['run', '--policy', 'docker', '--', 'sh', '-c', UNSHARE]);
      expect(docker.stdout).toBe('unshare: unshare failed: Operation not permitted\nunshare: unshare failed: Operation not permitted');
    }
    expect(residents(runtimes.nobody).length).toBe(1); // the fast path's resident planned it
  });

  it('as root with CAP_SYS_ADMIN: unshare is allowed; with it dropped from the bounding set, refused', async () => {
    for (const fast of [true, false]) {
      const root = await runAs([], fast, ['run', '--policy', 'docker', '--', 'sh', '-c', UNSHARE]);
      expect(root.stdout).toBe('user-ok\nmount-ok');
      // Root keeps across exec only what its bounding (and inheritable) set holds.
      const dropped = await runAs(['--bounding-set=-sys_admin', '--inh-caps=-all'], fast, ['run', '--policy', 'docker', '--', 'sh', '-c', UNSHARE]);
      expect(dropped.stdout).toBe('unshare: unshare failed: Operation not permitted\nunshare: unshare failed: Operation not permitted');
    }
    // One resident served both: the capabilities are the front end's, per request.
    expect(residents(runtimes.root).length).toBe(1);
  });
});

describe('the capabilities a jail holds', () => {
  const status = (uid: number, caps: { prm: string; bnd: string; inh: string; amb: string }) =>
    `Name:\tx\nUid:\t${uid}\t${uid}\t${uid}\t${uid}\nCapInh:\t${caps.inh}\nCapPrm:\t${caps.prm}\nCapEff:\t${caps.prm}\nCapBnd:\t${caps.bnd}\nCapAmb:\t${caps.amb}\n`;
  const full = '000001ffffffffff';
  const none = '0000000000000000';

  it('root: its bounding set within its permitted one; another user: its ambient set; a user namespace: all', () => {
    expect(jailCapabilities(parseCapabilityState(status(0, { prm: full, bnd: full, inh: none, amb: none })))).toEqual(ALL_CAPABILITIES);
    const noAdmin = (BigInt(`0x${full}`) & ~(1n << 21n)).toString(16);
    expect(jailCapabilities(parseCapabilityState(status(0, { prm: full, bnd: noAdmin, inh: none, amb: none })))).not.toContain('CAP_SYS_ADMIN');
    expect(jailCapabilities(parseCapabilityState(status(1000, { prm: full, bnd: full, inh: none, amb: none })))).toEqual([]);
    expect(jailCapabilities(parseCapabilityState(status(1000, { prm: '2000', bnd: full, inh: '2000', amb: '2000' })))).toEqual(['CAP_NET_RAW']);
    expect(jailCapabilities(parseCapabilityState(status(1000, { prm: none, bnd: full, inh: none, amb: none })), { rootInUserNs: true })).toEqual(ALL_CAPABILITIES);
  });

  it('reads this process\'s status', () => {
    const own = parseCapabilityState(readFileSync('/proc/self/status', 'utf8'));
    expect(own.euid).toBe(process.geteuid!());
  });
});

describe('vjail-oci: linux.seccomp\'s conditions on the process\'s capabilities', () => {
  const root = mkdtempSync(join(tmpdir(), 'vjail-oci-caps-root-'));
  const docker = JSON.parse(readFileSync(join(repoRoot, 'policies', 'docker-default.json'), 'utf8'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('unshare is allowed with CAP_SYS_ADMIN granted, refused without it (where the kernel would allow a user namespace)', async () => {
    const out: string[] = [];
    for (const [name, extra, policy] of [['with', ['CAP_SYS_ADMIN'], docker], ['without', [], docker], ['unfiltered', [], undefined]] as const) {
      const b = await makeBundle((c) => {
        c.process.args = ['sh', '-c', UNSHARE];
        for (const k of ['bounding', 'effective', 'permitted']) c.process.capabilities[k].push(...extra);
        if (policy) c.linux.seccomp = policy;
      });
      const r = await oci(['--root', root, 'run', '--bundle', b, `caps-${name}-${process.pid}`]);
      out.push(r.stdout);
      rmSync(b, { recursive: true, force: true });
    }
    expect(out[0]).toBe('user-ok\nmount-ok');
    expect(out[1]).toMatch(/^unshare: unshare\(0x10000000\): Operation not permitted\nunshare: unshare\(0x20000\): Operation not permitted$/);
    expect(out[2]).toMatch(/^user-ok\nunshare: unshare\(0x20000\): Operation not permitted$/);
  });
});
