import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { vjailBin } from './helpers/fixtures.js';
import { vjail, vjailStart } from './helpers/run.js';

/*
 * What `vjail run` does differently to start sooner must not show: the
 * launcher started without child_process (and with it where process.binding
 * would warn), stdin's tty-ness read through tty_wrap.
 */

describe('vjail run start-up paths', () => {
  it('stdin not a terminal: SIGINT and SIGQUIT sent to vjail reach the jail', async () => {
    for (const [sig, code] of [['SIGINT', 5], ['SIGQUIT', 6]] as const) {
      const p = vjailStart(['run', '--', 'sh', '-c', `trap "echo got; exit ${code}" ${sig.slice(3)}; echo ready; while :; do sleep 0.05; done`], { streams: true });
      await new Promise<void>((resolve) => p.stdout!.once('data', () => resolve()));
      p.kill(sig);
      const r = await p;
      expect(r.stdout).toContain('got');
      expect(r.exitCode).toBe(code);
    }
  });

  it('with process.binding deprecated (--pending-deprecation): no warning, same result', async () => {
    const r = await execa('node', ['--pending-deprecation', vjailBin, 'run', '--', 'sh', '-c', 'echo out; echo err >&2; exit 4'], { reject: false });
    expect(r.stdout).toBe('out');
    expect(r.stderr).toBe('err');
    expect(r.exitCode).toBe(4);
  });

  it('the jail inherits stdio and an exit by signal is 128+signal', async () => {
    const r = await vjail(['run', '--', 'sh', '-c', 'cat; kill -USR1 $$'], { input: 'through stdin' });
    expect(r.stdout).toBe('through stdin');
    expect(r.exitCode).toBe(128 + 10);
  });

  it('environment and working directory reach the jail', async () => {
    const r = await execa('node', [vjailBin, 'run', '--', 'sh', '-c', 'echo "$VJAIL_TEST_VAR $(pwd)"'], {
      reject: false,
      cwd: '/tmp',
      env: { VJAIL_TEST_VAR: 'value with spaces' },
    });
    expect(r.stdout).toBe('value with spaces /tmp');
  });
});
