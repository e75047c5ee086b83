import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixture } from './helpers/fixtures.js';
import { alive, pidOf, vjail, vjailStart, waitFor } from './helpers/run.js';

let anonfds: string;

beforeAll(() => {
  anonfds = fixture('anonfds');
});

/** Every check line the fixture writes, each "NAME ok". */
const CHECKS = [
  'epoll-pending', 'epoll-nested', 'epoll-new-event', 'epoll-oneshot', 'epoll-oneshot-spent',
  'timerfd-relative', 'timerfd-periodic', 'timerfd-absolute', 'timerfd-ticks', 'signalfd', 'inotify', 'pidfd',
  'memfd-name', 'memfd-seals', 'memfd-contents', 'memfd-sealed', 'deleted-file',
];

async function started(extra: string[] = []) {
  const dir = mkdtempSync(join(tmpdir(), 'vjail-anonfds-'));
  const argv = [anonfds, dir, ...extra];
  const run = vjailStart(['run', '--pid-ns', '--', ...argv]);
  expect(await waitFor(() => existsSync(join(dir, 'ready')), 30_000)).toBe(true);
  return { dir, argv, run, img: join(dir, 'image') };
}

describe('anonymous descriptors: epoll, timerfd, signalfd, inotify, pidfd, memfd, deleted files', { timeout: 120_000 }, () => {
  it('come back with their state and work after restore (--pid-ns)', async () => {
    const { dir, argv, run, img } = await started();
    const cp = await vjail(['checkpoint', '--pid', String(pidOf(argv, 2)), '--image', img]);
    expect(cp.stderr).toMatch(/checkpoint 5\/5 kill/);
    expect(cp.exitCode).toBe(0);
    expect((await run).exitCode).toBe(137);
    const listed = (await vjail(['inspect', img])).stdout;
    expect(listed).toMatch(/^\s+13 epoll .* epoll watching 10 \(0x19\), 11 \(0x8000001c\), 12 \(0x19\), 14 \(0x19\)$/m);
    expect(listed).toMatch(/^\s+18 timerfd .* timerfd on clock 1, absolute, \d+ ns left, every 5000000000 ns, 0 unread$/m);
    expect(listed).toMatch(/^\s+19 timerfd .* 1 unread$/m);
    expect(listed).toMatch(/^\s+21 inotify .* inotify: wd 3 \S+\/w3, wd 1 \S+\/w1$/m);
    expect(listed).toMatch(/^\s+22 pidfd .* pidfd of process 3$/m);
    expect(listed).toMatch(/^\s+25 memfd .* cloexec #\d+\s+memfd vjail-test, 8192 bytes, seals 0x6 at 3$/m);
    expect(listed).toMatch(/^\s+27 deleted .*\/gone \(deleted\), 16 bytes at 4$/m);

    const restored = vjailStart(['restore', img]);
    expect(await waitFor(() => pidOf(argv, 2) !== undefined, 30_000)).toBe(true);
    writeFileSync(join(dir, 'go'), '');
    const r = await restored;
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    const lines = readFileSync(join(dir, 'out'), 'utf8').trim().split('\n');
    expect(lines.map((l) => l.split(' ').slice(0, 2).join(' '))).toEqual(CHECKS.map((c) => `${c} ok`));
  });

  it('refuses an epoll watch whose descriptor number moved and an inotify with events queued, the jail untouched', async () => {
    const { dir, argv, run, img } = await started(['stale']);
    const pid = pidOf(argv, 2)!;
    const cp = await vjail(['checkpoint', '--pid', String(pid), '--image', img]);
    expect(cp.exitCode).toBe(1);
    expect(cp.stderr).toMatch(/process 2 \(anonfds-\w+\) fd 34: an epoll watching descriptor 30, which no process holding the epoll has open on the watched file any more/);
    expect(cp.stderr).toMatch(/process 2 \(anonfds-\w+\) fd 32: an inotify instance with 16 bytes of events not yet read/);
    expect(existsSync(img)).toBe(false);
    expect(alive(pid)).toBe(true);
    expect(existsSync(join(dir, 'ready'))).toBe(true);
    run.kill('SIGKILL');
    await run;
  });
});
