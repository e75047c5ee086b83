import { describe, expect, it } from 'vitest';
import { spawnJail } from '../src/index.js';
import { fixture } from './helpers/fixtures.js';

describe('library API', () => {
  it('spawns a jail, observes its intercepted calls, and reports how it ended', async () => {
    const lines: string[] = [];
    const jail = spawnJail({
      command: [fixture('probe'), 'threads', '3'],
      profile: 'linux-4.19',
      trace: (l) => lines.push(l),
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    expect(jail.pid).toBeGreaterThan(0);
    expect(jail.profile.name).toBe('linux-4.19');
    const exit = await jail.exited;
    expect(exit).toEqual({ code: 0, signal: null, status: 0 });
    expect(lines.filter((l) => /\buname\(/.test(l))).toHaveLength(3);
    expect(jail.stats().find((s) => s.name === 'uname')?.count).toBe(3);
  });

  it('kill() signals the jail and the exit says which signal', async () => {
    const jail = spawnJail({ command: ['sleep', '30'], stdio: ['ignore', 'ignore', 'inherit'] });
    jail.kill('SIGKILL');
    expect(await jail.exited).toEqual({ code: null, signal: 'SIGKILL', status: 137 });
  });

  it('rejects an empty command', () => {
    expect(() => spawnJail({ command: [] })).toThrow(/no command/);
  });
});
