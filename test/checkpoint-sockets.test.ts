import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixture } from './helpers/fixtures.js';
import { pidOf, vjail, vjailStart, waitFor } from './helpers/run.js';

let sockkinds: string;
beforeAll(() => {
  sockkinds = fixture('sockkinds');
});

/** Run the fixture in MODE, checkpoint it, restore it, let it check; its verdict lines. */
async function roundTrip(mode: string, checks: string[]): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vjail-sockets-'));
  const argv = [sockkinds, dir, mode];
  const run = vjailStart(['run', '--', ...argv]);
  expect(await waitFor(() => existsSync(join(dir, 'ready')), 30_000)).toBe(true);
  const img = join(dir, 'image');
  const cp = await vjail(['checkpoint', '--pid', String(pidOf(argv)), '--image', img]);
  expect(cp.stderr).toMatch(/checkpoint 5\/5 kill/);
  expect((await run).exitCode).toBe(137);
  const restored = vjailStart(['restore', img]);
  expect(await waitFor(() => pidOf(argv) !== undefined, 30_000)).toBe(true);
  writeFileSync(join(dir, 'go'), '');
  const r = await restored;
  expect(r.stderr).toBe('');
  expect(r.exitCode).toBe(0);
  expect(readFileSync(join(dir, 'out'), 'utf8').trim().split('\n')).toEqual(checks.map((c) => `${c} ok`));
}

describe('sockets', { timeout: 120_000 }, () => {
  it('unix socketpairs with queued data, listeners (path, abstract), a client/server pair and a pending connection', async () => {
    await roundTrip('unix', [
      'stream-a2b', 'stream-b2a', 'stream-rcvbuf', 'stream-after', 'dgram-1', 'dgram-empty', 'dgram-3', 'seqpacket-1', 'seqpacket-2',
      'types', 'pending', 'pending-data', 'listen-path', 'listen-abstract', 'connected-names', 'client-s2c', 'server-c2s',
      'client-nonblock', 'server-passcred', 'listen-server',
    ]);
  });

  it('TCP listeners and bound UDP sockets, IPv4 and IPv6, come back on the same ports with their options', async () => {
    await roundTrip('inet', ['same-addresses', 'tcp4-listener', 'tcp6-listener', 'options', 'udp4', 'udp6']);
  });
});
