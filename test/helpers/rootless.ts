import { chownSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, execaSync } from 'execa';
import { vjailBin } from './fixtures.js';

/** A user of the test host with subordinate IDs, made by the tests that need one. */
export const ROOTLESS_USER = 'vjail-rootless';

export interface RootlessUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  /** The first of its subordinate user IDs (and group IDs: the same range). */
  subStart: number;
}

const subStart = (file: string, name: string): number | undefined => {
  const line = readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith(`${name}:`));
  return line ? Number(line.split(':')[1]) : undefined;
};

/** A free range of 65536 IDs above every range in /etc/subuid and /etc/subgid. */
function freeRange(): number {
  let top = 100000;
  for (const file of ['/etc/subuid', '/etc/subgid']) {
    for (const l of readFileSync(file, 'utf8').split('\n')) {
      const [, start, count] = l.split(':');
      if (start && count) top = Math.max(top, Number(start) + Number(count));
    }
  }
  return top;
}

/**
 * The rootless test user, created if missing (with a home, for podman's
 * storage), with 65536 subordinate user and group IDs; idempotent. Also
 * checks that newuidmap and newgidmap (Debian's uidmap package) are there.
 */
export function rootlessUser(): RootlessUser {
  const name = ROOTLESS_USER;
  if (execaSync('id', ['-u', name], { reject: false }).exitCode !== 0) {
    execaSync('useradd', ['--create-home', '--shell', '/bin/sh', name]);
  }
  for (const f of ['/etc/subuid', '/etc/subgid']) execaSync('touch', [f]);
  if (subStart('/etc/subuid', name) === undefined || subStart('/etc/subgid', name) === undefined) {
    const start = freeRange();
    const range = `${start}-${start + 65535}`;
    execaSync('usermod', ['--add-subuids', range, '--add-subgids', range, name]);
  }
  for (const tool of ['newuidmap', 'newgidmap']) {
    if (execaSync('sh', ['-c', `command -v ${tool}`], { reject: false }).exitCode !== 0) throw new Error(`${tool} is missing: apt-get install uidmap (.ci/apt-packages)`);
  }
  const id = (flag: string) => Number(execaSync('id', [flag, name]).stdout);
  return { name, uid: id('-u'), gid: id('-g'), home: execaSync('sh', ['-c', `getent passwd ${name} | cut -d: -f6`]).stdout, subStart: subStart('/etc/subuid', name)! };
}

/** A directory owned by `user` (for its runtime directory and its files). */
export function dirOwnedBy(user: { uid: number; gid: number }, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chownSync(dir, user.uid, user.gid);
  return dir;
}

/** Run a command as `user` (its groups, its home, the given runtime directory); never rejects. */
export function asUser(user: { name: string; home?: string }, runtime: string, argv: string[], opts: { timeoutMs?: number; env?: Record<string, string> } = {}) {
  const ids = user.name === 'nobody' ? ['--reuid=nobody', '--regid=nogroup', '--clear-groups'] : [`--reuid=${user.name}`, `--regid=${user.name}`, '--init-groups'];
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: user.home ?? '/nonexistent', XDG_RUNTIME_DIR: runtime, ...opts.env };
  return execa('setpriv', [...ids, 'env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...argv], { reject: false, cwd: '/', stdin: 'ignore', timeout: opts.timeoutMs ?? 60_000 });
}

/** The vjail CLI (the Node one) as `user`. */
export const vjailAs = (user: { name: string; home?: string }, runtime: string, args: string[], opts: { timeoutMs?: number; env?: Record<string, string> } = {}) =>
  asUser(user, runtime, [process.execPath, vjailBin, ...args], opts);
