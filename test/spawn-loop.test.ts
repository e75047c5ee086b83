/**
 * Jails started one after another in one process, as a long-lived program
 * does: what is remembered between them (plans, compiled filters, validated
 * profiles, the cgroup hierarchy) must never hand one jail another's inputs,
 * and a jail is reported ended only once nothing of it is left.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnJail, type JailOptions } from '../src/index.js';
import { dataPath } from '../src/paths.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vjail-spawn-loop-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function text(stream: Readable | null): Promise<string> {
  let out = '';
  for await (const chunk of stream!) out += String(chunk);
  return out;
}

/** Run a command in a jail; its stdout and exit status. */
async function run(command: string[], opts: Partial<JailOptions> = {}): Promise<{ stdout: string; status: number }> {
  const jail = spawnJail({ command, stdio: ['ignore', 'pipe', 'inherit'], ...opts });
  const [stdout, exit] = await Promise.all([text(jail.stdout), jail.exited]);
  return { stdout: stdout.trim(), status: exit.status };
}

/** A profile file: linux-4.19's, answering uname -r with `release`. */
function profileFile(path: string, release: string): string {
  const profile = JSON.parse(readFileSync(dataPath('profiles', 'linux-4.19.json'), 'utf8'));
  profile.uname.release = release;
  writeFileSync(path, JSON.stringify(profile));
  return path;
}

describe('jails started one after another in one process', () => {
  it('each jail sees its own profile\'s uname -r, whatever the jail before it ran under', async () => {
    const profiles = ['linux-4.19', 'host', 'linux-5.10', 'linux-4.19', 'host'];
    const seen = [];
    for (const profile of profiles) seen.push((await run(['uname', '-r'], { profile })).stdout);
    expect(seen).toEqual(['4.19.0-27-amd64', release(), '5.10.0-33-amd64', '4.19.0-27-amd64', release()]);
  });

  it('a profile file rewritten between two jails: the second sees the new release', async () => {
    const file = join(dir, 'profile.json');
    profileFile(file, '4.19.0-first');
    const first = await run(['uname', '-r'], { profile: file });
    profileFile(file, '4.19.0-second');
    const second = await run(['uname', '-r'], { profile: file });
    expect([first.stdout, second.stdout]).toEqual(['4.19.0-first', '4.19.0-second']);
  });

  it('a policy file rewritten between two jails takes effect: mkdir denied, then allowed, then denied again', async () => {
    const policy = join(dir, 'policy.json');
    const write = (action: string) =>
      writeFileSync(policy, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir', 'mkdirat'], action }] }));
    const made: boolean[] = [];
    for (const [i, action] of ['SCMP_ACT_ERRNO', 'SCMP_ACT_ALLOW', 'SCMP_ACT_ERRNO'].entries()) {
      write(action);
      const target = join(dir, `made-${i}`);
      const r = await run(['mkdir', target], { policy, warn: () => {}, stdio: ['ignore', 'pipe', 'ignore'] });
      made.push(existsSync(target));
      expect(r.status === 0).toBe(existsSync(target));
    }
    expect(made).toEqual([false, true, false]);
  });

  it('its reaper killed with a child of the jail still running: that child is killed before the jail is reported ended, and the cgroup removed', async () => {
    const pidFile = join(dir, 'background.pid');
    const jail = spawnJail({ command: ['sh', '-c', `sleep 60 & echo $! > ${pidFile}; wait`], stdio: ['ignore', 'ignore', 'inherit'] });
    const background = await waitForPid(pidFile);
    const cgroupLine = readFileSync(`/proc/${background}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'));
    const init = Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${jail.pid}/status`, 'utf8'))![1]);
    process.kill(init, 'SIGKILL');
    const exit = await jail.exited;
    expect(exit.signal).toBe('SIGKILL');
    expect(alive(background)).toBe(false);
    // The jail's own cgroup (vjail-run/runN.PID, in the v2 hierarchy here) is gone with it.
    const path = cgroupLine?.slice(3) ?? '';
    if (path.includes('/vjail-run/')) expect(existsSync(join(cgroupMount(), path))).toBe(false);
  }, 20_000);
});

async function waitForPid(file: string): Promise<number> {
  for (let i = 0; i < 500; i++) {
    const pid = existsSync(file) ? Number(readFileSync(file, 'utf8').trim()) : 0;
    if (pid > 0) return pid;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no pid in ${file} after 5 s`);
}

/** Alive and not a zombie. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function cgroupMount(): string {
  const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' - ')[1]?.startsWith('cgroup2 '));
  return line?.split(' ')[4] ?? '/sys/fs/cgroup';
}
