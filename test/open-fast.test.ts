import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture } from './helpers/fixtures.js';
import { vjail } from './helpers/run.js';

// The open shim's fast path (native/openfast.c): plain opens answered by the
// supervisor's native thread. Each case must come out as the kernel's own,
// for root and for an unprivileged caller, and the opens must really be
// answered in C.

const JAIL = ['run', '--profile', 'linux-4.19', '--kernel-files', 'shim'];
const NOBODY = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups'];
let prog: string;
let top: string;

/** A fresh directory laid out as test/fixtures/openfast.c expects. */
function layout(): string {
  const d = mkdtempSync(join(top, 'case-'));
  chmodSync(d, 0o777);
  writeFileSync(join(d, 'readable'), 'hi\n', { mode: 0o644 });
  writeFileSync(join(d, 'rootonly'), 'secret\n', { mode: 0o600 });
  mkdirSync(join(d, 'sub'), { mode: 0o777 });
  chmodSync(join(d, 'sub'), 0o777);
  writeFileSync(join(d, 'sub', 'f'), 'f\n', { mode: 0o644 });
  mkdirSync(join(d, 'noexec'), { mode: 0o700 });
  writeFileSync(join(d, 'noexec', 'x'), 'x\n');
  for (const p of ['', 'readable', 'rootonly', 'sub', 'sub/f', 'noexec', 'noexec/x']) chownSync(join(d, p), 0, 0);
  return d;
}

async function native(args: string[]): Promise<string> {
  const r = await execa(args[0]!, args.slice(1), { reject: false });
  expect(r.exitCode, r.stderr).toBe(0);
  return r.stdout;
}

async function jailed(args: string[]): Promise<{ stdout: string; stderr: string }> {
  const r = await vjail([...JAIL, '--', ...args]);
  expect(r.exitCode, r.stderr).toBe(0);
  return r;
}

beforeAll(() => {
  prog = fixture('openfast');
  top = mkdtempSync(join(tmpdir(), 'vjail-openfast-'));
  chmodSync(top, 0o755);
});

afterAll(() => rmSync(top, { recursive: true, force: true }));

describe.each([
  ['root', [] as string[]],
  ['nobody', NOBODY],
])('open through the shim as %s', (_who, as) => {
  it('gives what the kernel gives: files, directories, errors, O_CREAT with the umask, O_CLOEXEC, dirfds, cwd, EMFILE', async () => {
    const want = await native([...as, prog, layout()]).then((s) => s.trim());
    const got = (await jailed([...as, prog, layout()])).stdout.trim();
    expect(want).toContain('fill: EMFILE');
    expect(got).toBe(want);
  });

  it('answers plain opens in the native thread', async () => {
    const r = await vjail([...JAIL, '--stats', '--', ...as, prog, layout(), '300']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain('failed 0');
    const inC = Number(/(\d+) answered in C/.exec(r.stdout + r.stderr)?.[1]);
    expect(inC).toBeGreaterThanOrEqual(300);
  });
});

it('switches between callers of different identities in one jail (root, nobody, root again)', async () => {
  const [d1, d2, d3] = [layout(), layout(), layout()];
  const want = [await native([prog, layout()]), await native([...NOBODY, prog, layout()]), await native([prog, layout()])].join('\n');
  const script = `${prog} ${d1} && ${NOBODY.join(' ')} ${prog} ${d2} && ${prog} ${d3}`;
  const got = (await jailed(['sh', '-c', script])).stdout;
  expect(want).toContain('rootonly: EACCES');
  expect(got.trim()).toBe(want.trim());
});

describe('a caller in a user namespace of its own', () => {
  // `unshare -U` without a mapping: after exec the caller is root's uid outside with no capability
  // anywhere, so nothing of its identity depends on the namespace and the native thread answers it.
  const argv = (d: string, ...more: string[]) => ['unshare', '-U', prog, d, ...more];

  it('without capabilities, gives what the kernel gives', async () => {
    const want = (await native(argv(layout()))).trim();
    expect(want).toContain('fill: EMFILE');
    expect((await jailed(argv(layout()))).stdout.trim()).toBe(want);
  });

  it('without capabilities, is answered in the native thread', async () => {
    const r = await vjail([...JAIL, '--stats', '--', ...argv(layout(), '300')]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain('failed 0');
    const inC = Number(/(\d+) answered in C/.exec(r.stdout + r.stderr)?.[1]);
    expect(inC).toBeGreaterThanOrEqual(300);
  });
});

describe('identities kept from one open to the next', () => {
  // The native thread keeps each caller thread's identity between opens (native/idcache.c). Each
  // change below comes between two opens of the same thread, or of another thread sharing what
  // changed; an open answered with what was kept from before the change would differ from the kernel's.
  function idLayout(): string {
    const d = mkdtempSync(join(top, 'id-'));
    chmodSync(d, 0o777);
    writeFileSync(join(d, 'uidonly'), 'x\n', { mode: 0o600 });
    chownSync(join(d, 'uidonly'), 65534, 0);
    writeFileSync(join(d, 'rootonly'), 'x\n', { mode: 0o600 });
    writeFileSync(join(d, 'grouponly'), 'x\n');
    chmodSync(join(d, 'grouponly'), 0o040);
    chownSync(join(d, 'grouponly'), 1, 65533);
    mkdirSync(join(d, 'newroot'));
    writeFileSync(join(d, 'newroot', 'marker'), 'm\n');
    return d;
  }

  it('setresuid, setfsuid, capset and setgroups on one thread, umask and chroot on another, execve from a thread that is not the leader: as the kernel gives', async () => {
    const prog = fixture('idchange');
    const want = (await native([prog, idLayout()])).trim();
    for (const line of [
      'thread after setresuid(1000) uidonly: EACCES',
      'main still root uidonly: ok',
      'thread after setfsuid(65534) rootonly: EACCES',
      'thread after capset(CAP_SETGID) uidonly: EACCES',
      'thread in group 65533 grouponly: ok',
      'thread after setgroups(0) grouponly: EACCES',
      "main after a thread's umask(077) created2: ok, mode 600",
      "main after a thread's chroot /marker: ok",
      'after exec from a thread as 65534 rootonly: EACCES',
    ]) expect(want).toContain(line);
    expect((await jailed([prog, idLayout()])).stdout.trim()).toBe(want);
  });

  it('no jail task can change its identity behind a seccomp listener of its own: the kernel refuses it one (EBUSY)', async () => {
    // What keeping identities rests on: vjail sees every such call first. Natively the listener lets
    // setresuid through unseen by older filters; in the jail, vjail's filter already has the listener.
    const prog = fixture('idchange');
    const want = (await native([prog, idLayout(), 'listener'])).trim().split('\n');
    expect(want).toEqual(["thread as root rootonly: ok", "thread's own listener: ok", 'thread after setresuid(1000) through its own listener rootonly: EACCES']);
    const got = (await jailed([prog, idLayout(), 'listener'])).stdout.trim().split('\n');
    expect(got).toEqual([want[0], "thread's own listener: Device or resource busy", want[2]]);
  });
});
