import { execa } from 'execa';
import { expect } from 'vitest';
import { vjailBin } from './fixtures.js';
import { vjail, waitFor } from './run.js';

/** A named jail's state as "vjail ps --json" says it (running, ending, exited, gone), '' when not listed. */
export async function jailState(name: string): Promise<string> {
  const r = await vjail(['ps', '--json']);
  return (JSON.parse(r.stdout) as { name: string; state: string }[]).find((j) => j.name === name)?.state ?? '';
}

/** Wait (10 s at most) until the jail's state is one `ok` accepts. */
export async function waitForState(name: string, ok: (s: string) => boolean): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (ok(await jailState(name))) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

/** A page server for one migration (--once) holding the key in `psk`, once it listens: its port, its end and its log. */
export async function pageServer(psk: string) {
  const p = execa('node', [vjailBin, 'page-server', '--port', '0', '--host', '127.0.0.1', '--psk-file', psk, '--once'], { reject: false, stdin: 'ignore', stdout: 'ignore' });
  let log = '';
  p.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  expect(await waitFor(() => /listening on 127\.0\.0\.1:\d+/.test(log), 30_000)).toBe(true);
  const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(log)![1]);
  return { port, done: p, log: () => log };
}
