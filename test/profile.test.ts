import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dataPath } from '../src/paths.js';
import { listProfiles, loadProfile, ProfileError } from '../src/profile/load.js';
import { releaseMatchesKernel } from '../src/profile/schema.js';

const HOST = { release: '6.18.44-test', version: '#1 SMP PREEMPT_DYNAMIC @0', machine: 'x86_64', domainname: '(none)' };

const EXPECTED = [
  'host',
  'linux-2.6.32',
  'linux-3.10',
  'linux-4.4',
  'linux-4.14',
  'linux-4.19',
  'linux-5.4',
  'linux-5.10',
  'linux-5.15',
  'linux-6.1',
  'linux-6.6',
  'linux-6.12',
  'linux-6.18',
];

const dir = mkdtempSync(join(tmpdir(), 'vjail-profile-'));
let n = 0;
/** Write `body` to a fresh file and return the one-line error loading it gives. */
function errorFor(body: unknown): string {
  const file = join(dir, `p${n++}.json`);
  writeFileSync(file, typeof body === 'string' ? body : JSON.stringify(body));
  try {
    loadProfile(file, HOST);
  } catch (e) {
    expect(e).toBeInstanceOf(ProfileError);
    const msg = (e as Error).message;
    expect(msg).not.toContain('\n');
    return msg;
  }
  throw new Error('expected the profile to be rejected');
}

const GOOD = {
  name: 'custom',
  description: 'a test profile',
  kernel: '4.19',
  uname: { sysname: 'Linux', release: '4.19.0-27-amd64', version: '#1 SMP Debian 4.19.316-1 (2024-06-25)', machine: 'x86_64', domainname: '(none)' },
};

describe('shipped profiles', () => {
  it('are exactly the expected set, listed host first and then by kernel', () => {
    expect(listProfiles(HOST).map((p) => p.name)).toEqual(EXPECTED);
    const files = readdirSync(dataPath('profiles')).filter((f) => f.endsWith('.json'));
    expect(files.sort()).toEqual(EXPECTED.map((e) => `${e}.json`).sort());
  });

  it.each(EXPECTED.filter((e) => e !== 'host'))('%s loads with a uname that matches its kernel', (name) => {
    const p = loadProfile(name, HOST);
    expect(p.name).toBe(name);
    expect(p.isHost).toBe(false);
    expect(`linux-${p.kernel}`).toBe(name);
    expect(releaseMatchesKernel(p.uname.release, p.kernel)).toBe(true);
    expect(p.uname.version).toMatch(/^#\d+\S* SMP /);
    expect(p.uname.sysname).toBe('Linux');
    expect(p.uname.machine).toBe('x86_64');
    expect(p.shimErrorErrno).toBe(5); // EIO: a failing shim never answers ENOSYS
    expect(p.overrides).toEqual({ add: [], remove: [] });
  });

  it('host takes its kernel and uname from the running kernel', () => {
    const p = loadProfile('host', HOST);
    expect(p.isHost).toBe(true);
    expect(p.kernel).toBe('6.18');
    expect(p.uname).toEqual({ sysname: 'Linux', release: HOST.release, version: HOST.version, machine: 'x86_64', domainname: '(none)' });
  });

  it('host reads the real running kernel by default', () => {
    const p = loadProfile('host');
    expect(p.kernel).toMatch(/^\d+\.\d+$/);
    expect(releaseMatchesKernel(p.uname.release, p.kernel)).toBe(true);
  });

  it('buster presents the uname Debian 10 printed', () => {
    const p = loadProfile('linux-4.19', HOST);
    expect(p.uname.release).toBe('4.19.0-27-amd64');
    expect(p.uname.version).toBe('#1 SMP Debian 4.19.316-1 (2024-06-25)');
  });
});

describe('profile errors', () => {
  it('unknown profile name', () => {
    expect(() => loadProfile('linux-9.9', HOST)).toThrow(
      new ProfileError('unknown profile "linux-9.9"; run "vjail profiles list" to see the available ones'),
    );
    expect(() => loadProfile('../package', HOST)).toThrow(ProfileError);
  });

  it('a path that does not exist', () => {
    expect(() => loadProfile(join(dir, 'nope.json'), HOST)).toThrow(/does not exist; give an existing file/);
  });

  it('a valid custom profile loads from a path', () => {
    const file = join(dir, 'good.json');
    writeFileSync(file, JSON.stringify({ ...GOOD, overrides: { add: ['statx'], remove: ['_sysctl', 'bpf'] }, shimErrorErrno: 1 }));
    const p = loadProfile(file, HOST);
    expect(p.overrides).toEqual({ add: ['statx'], remove: ['_sysctl', 'bpf'] });
    expect(p.shimErrorErrno).toBe(1);
    expect(p.uname).not.toHaveProperty('nodename');
  });

  it('unknown top-level key names the key and what is allowed', () => {
    expect(errorFor({ ...GOOD, kernal: '4.19' })).toMatch(/unknown key "kernal"; remove it \(allowed here: name, description, kernel, uname/);
  });

  it('unknown nested key names its full path', () => {
    expect(errorFor({ ...GOOD, uname: { ...GOOD.uname, hostname: 'x' } })).toMatch(/unknown key "uname.hostname"; remove it \(allowed here: sysname, nodename/);
  });

  it('wrong type names the field and both types', () => {
    expect(errorFor({ ...GOOD, kernel: 4.19 })).toMatch(/field "kernel" must be a string, not a number$/);
    expect(errorFor({ ...GOOD, shimErrorErrno: 'EPERM' })).toMatch(/field "shimErrorErrno" must be a number, not a string$/);
    expect(errorFor({ ...GOOD, shimErrorErrno: 1.5 })).toMatch(/field "shimErrorErrno" must be a whole number/);
    expect(errorFor({ ...GOOD, overrides: { add: 'statx' } })).toMatch(/field "overrides.add" must be an array, not a string$/);
  });

  it('missing field', () => {
    const { description: _d, ...rest } = GOOD;
    expect(errorFor(rest)).toMatch(/missing field "description"; add it/);
    expect(errorFor({ ...GOOD, uname: undefined })).toMatch(/field "uname" is required unless "kernel" is "host"/);
  });

  it('release that does not start with the kernel version', () => {
    const msg = errorFor({ ...GOOD, uname: { ...GOOD.uname, release: '4.14.336-amzn2' } });
    expect(msg).toMatch(/field "uname.release" is "4.14.336-amzn2" but must start with the kernel version "4.19"/);
    // 4.1 is not a prefix version of 4.19.
    expect(errorFor({ ...GOOD, kernel: '4.1' })).toMatch(/uname.release/);
  });

  it('other field checks', () => {
    expect(errorFor({ ...GOOD, kernel: 'four' })).toMatch(/field "kernel" must be "host" or a kernel version such as "4.19"/);
    expect(errorFor({ ...GOOD, uname: { ...GOOD.uname, version: 'SMP Debian' } })).toMatch(/field "uname.version" must look like `uname -v` output/);
    expect(errorFor({ ...GOOD, uname: { ...GOOD.uname, nodename: 'x'.repeat(65) } })).toMatch(/field "uname.nodename" must be at most 64 bytes/);
    expect(errorFor({ ...GOOD, kernel: 'host' })).toMatch(/field "uname" must be absent when "kernel" is "host"/);
    expect(errorFor({ ...GOOD, overrides: { add: ['statx'], remove: ['statx'] } })).toMatch(/field "overrides" lists "statx" in both "add" and "remove"/);
    expect(errorFor({ ...GOOD, overrides: { add: ['Stat X'] } })).toMatch(/field "overrides.add.0" must be a syscall name/);
    expect(errorFor('{ "name": ')).toMatch(/not valid JSON: .*; fix the file there$/);
    expect(errorFor([1])).toMatch(/the profile must be an object, not an array/);
  });
});
