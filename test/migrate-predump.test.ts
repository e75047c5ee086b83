import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { restorersUnder } from './helpers/restorers.js';
import { connectPageServer } from '../src/migrate/transfer.js';
import type { LaunchHint } from '../src/migrate/protocol.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture } from './helpers/fixtures.js';
import { jailState, pageServer, waitForState } from './helpers/migrate.js';
import { pidOf, vjail, waitFor } from './helpers/run.js';

// vjail migrate of a workload that keeps writing its memory while it is moved
// (test/fixtures/dirtier.c): its memory sent to the receiver round after
// round while it runs (the default), only what it wrote since once it is
// stopped, restored lazily there. Once DIR/go exists the moved copy replays every write it
// counted, here and there, on a fresh copy and compares page by page: an old
// copy of a page, a missed write or a page lost on the way shows as a
// difference, and a copy that did not go on counting could not say "ok".

const MIB = 64;
const RATE = 10; // MiB written a second, spread over the whole range
let dirtier: string;
let stateDir: string;
let work: string;
const started: string[] = [];

beforeAll(() => {
  dirtier = fixture('dirtier');
  stateDir = mkdtempSync(join(tmpdir(), 'vjail-migrate-state-'));
  work = mkdtempSync(join(tmpdir(), 'vjail-migrate-'));
  process.env.VJAIL_STATE_DIR = stateDir;
  writeFileSync(join(work, 'key'), Buffer.from(Array.from({ length: 32 }, () => Math.floor(Math.random() * 256))));
});

afterAll(async () => {
  for (const name of started) await vjail(['kill', name, '--signal', 'KILL']);
  // A killed jail's supervisor writes its last state as it ends: wait for that (10 s each at most).
  for (const name of started) await waitForState(name, (st) => st !== 'running' && st !== 'ending');
  delete process.env.VJAIL_STATE_DIR;
  rmSync(work, { recursive: true, force: true });
  rmSync(stateDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
});

const key = (): string => join(work, 'key');

/** Seconds since boot (/proc/uptime), and when process `pid` started in the same terms (/proc/PID/stat field 22, USER_HZ 100). */
const uptime = (): number => Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
const startedSinceBoot = (pid: number): number => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[19]) / 100;

/** The dirtier as a named detached jail, once its memory is filled and it writes. */
async function startDirtier(name: string): Promise<{ dir: string; argv: string[] }> {
  const dir = mkdtempSync(join(work, `${name}-`));
  const argv = [dirtier, dir, String(MIB), String(RATE)];
  started.push(name);
  const r = await vjail(['run', '--name', name, '--detach', '--', ...argv]);
  expect(r.stderr).toBe('');
  expect(r.exitCode).toBe(0);
  expect(await waitFor(() => existsSync(join(dir, 'ready')), 60_000)).toBe(true);
  return { dir, argv };
}

/** Pids of the supervisors a page server started for jail `name` that still wait for their image. */
function prestarted(name: string): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      if (argv.includes('--image-from-fd') && argv[argv.indexOf('--name') + 1] === name) pids.push(Number(e));
    } catch {
      // ended meanwhile
    }
  }
  return pids;
}

/** Let the workload check itself (DIR/go) and return its verdict. */
/**
 * A relay on a port of its own to the page server at `to`: each chunk the sender sends goes to
 * `onData` with the two sockets (the sender's, the page server's), which decides what is passed on.
 * Its port, and a close.
 */
async function relay(to: number, onData: (d: Buffer, sender: Socket, server: Socket) => void): Promise<{ port: number; close: () => void }> {
  const proxy = createServer({ allowHalfOpen: true }, (c) => {
    const u = connect({ host: '127.0.0.1', port: to, allowHalfOpen: true });
    c.on('error', () => {});
    u.on('error', () => {});
    c.on('data', (d: Buffer) => onData(d, c, u));
    c.on('end', () => u.end());
    u.pipe(c);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return { port: (proxy.address() as AddressInfo).port, close: () => proxy.close() };
}

async function verdict(dir: string): Promise<string> {
  writeFileSync(join(dir, 'go'), '');
  expect(await waitFor(() => existsSync(join(dir, 'result')), 60_000)).toBe(true);
  return readFileSync(join(dir, 'result'), 'utf8').trim();
}

describe('vjail migrate with its pre-dump rounds streamed, restored lazily there', () => {
  it('moves a workload that keeps writing: every page there is what it wrote here, and it goes on writing', async () => {
    const jail = await startDirtier('writer');
    const server = await pageServer(key());
    started.push('written');
    const before = uptime();
    const r = await vjail(['migrate', 'writer', `127.0.0.1:${server.port}`, '--psk-file', key(), '--as', 'written', '--pre-dump-rounds', '3', '--json', '-q'], { timeoutMs: 180_000 });
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    const result = JSON.parse(r.stdout);
    expect(result).toMatchObject({ ok: true, jail: 'writer', as: 'written', preDump: true, lazy: true });
    // All of its memory went while it ran; once stopped, only what it wrote since the last round.
    expect(result.memorySentRunning).toBeGreaterThanOrEqual(MIB * 2 ** 20);
    expect(result.memorySentStopped).toBeLessThan(result.memorySentRunning);
    // Every phase was measured, the stopped ones inside the stop.
    for (const phase of ['connectMs', 'runningMs', 'dumpMs', 'sendMs', 'restoreWaitMs', 'receiverReceiveMs', 'receiverRestoreMs', 'answerMs']) {
      expect(result.phases[phase]).toBeGreaterThanOrEqual(0);
    }
    expect(result.stoppedMs).toBeGreaterThanOrEqual(result.phases.dumpMs + result.phases.sendMs);
    // The stop ends where the jail ran there: the receiver's answer, sent after, is not in it.
    expect(result.totalMs).toBeGreaterThanOrEqual(result.phases.connectMs + result.phases.runningMs + result.stoppedMs + result.phases.answerMs);
    // The restored process is the restorer the receiver started at the handshake, while the jail still ran here
    // (the stop began later than this: the sender counts from its own start, after \`before\`).
    expect(startedSinceBoot(result.pid)).toBeLessThan(before + (result.phases.connectMs + result.phases.runningMs) / 1000);
    expect(result.totalMs).toBeGreaterThan(result.stoppedMs);
    await server.done;
    expect(server.log()).toMatch(/receiving jail "written" from .* \(to restore lazily\)/);
    expect(server.log()).toMatch(/restored jail "written" \(pid \d+\)/);
    // Ended here, running there; the pre-dump's copies are gone.
    expect(await waitForState('writer', (st) => st === 'exited')).toBe(true);
    expect(await jailState('written')).toBe('running');
    expect(pidOf(jail.argv)).toBeDefined();
    // It writes on there a while (its lazily restored pages placed as it faults) before it checks.
    await new Promise((r) => setTimeout(r, 1000));
    expect(await verdict(jail.dir)).toMatch(/^ok [1-9]\d*$/);
  }, 240_000);

  it('a frame of a round changed on the way is refused before anything runs there; the workload runs on here, its memory intact', async () => {
    const jail = await startDirtier('kept');
    const server = await pageServer(key());
    // Someone between the two, without the key, changes one byte of the first round (past the handshake).
    let seen = 0;
    const proxy = await relay(server.port, (d, _sender, there) => {
      const at = 256 * 1024 - seen;
      if (at >= 0 && at < d.length) d[at] ^= 0x40;
      seen += d.length;
      there.write(d);
    });
    const r = await vjail(['migrate', 'kept', `127.0.0.1:${proxy.port}`, '--psk-file', key(), '--as', 'forged', '-q'], { timeoutMs: 180_000 });
    proxy.close();
    expect(seen).toBeGreaterThan(256 * 1024);
    expect(r.exitCode).toBe(2);
    expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1);
    expect(r.stderr).toMatch(/could not restore the jail \(.*(authenticat|decrypt|checksum|sha256).*\); the jail runs on here/i);
    await server.done;
    expect(server.log()).not.toMatch(/restored jail/);
    expect(server.log()).toMatch(/migration from .* failed: /);
    // Nothing of it runs there; here it runs on, and none of its writes was lost.
    expect(await jailState('forged')).toBe('');
    expect(await jailState('kept')).toBe('running');
    expect(await verdict(jail.dir)).toMatch(/^ok [1-9]\d*$/);
  }, 240_000);

  it('the supervisor started there at the handshake ends and leaves nothing when the sender goes away before its last image; moved again, every page arrives', async () => {
    const jail = await startDirtier('cut');
    const server = await pageServer(key());
    // Between the two: once the rounds flow and the supervisor there waits for its image, both connections are cut.
    let seen = 0;
    let cut = false;
    let waited: boolean | undefined;
    let early: number[] = [];
    const proxy = await relay(server.port, (d, sender, there) => {
      if (cut) return;
      seen += d.length;
      if (seen < 256 * 1024) {
        there.write(d);
        return;
      }
      cut = true;
      // The supervisor there waits, and the restorer it started from what the sender said of the jail runs.
      void waitFor(() => prestarted('cut-there').length > 0 && (early = restorersUnder(prestarted('cut-there'))).length > 0, 30_000).then((ok) => {
        waited = ok;
        sender.destroy();
        there.destroy();
      });
    });
    const r = await vjail(['migrate', 'cut', `127.0.0.1:${proxy.port}`, '--psk-file', key(), '--as', 'cut-there', '-q'], { timeoutMs: 180_000 });
    proxy.close();
    expect(waited).toBe(true);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1);
    expect(r.stderr).toMatch(/the jail runs on here|the jail was left as it was/);
    await server.done;
    expect(server.log()).toMatch(/migration from .* failed: /);
    // The page server ended its supervisor before it ended itself: no process, no jail, no directory of it there.
    expect(prestarted('cut-there')).toEqual([]);
    expect(early.filter((pid) => existsSync(`/proc/${pid}`))).toEqual([]);
    expect(await jailState('cut-there')).toBe('');
    expect(existsSync(join(stateDir, 'cut-there'))).toBe(false);
    expect(await jailState('cut')).toBe('running');
    // Moved again, to a page server that stays: it arrives whole, and runs there.
    const again = await pageServer(key());
    started.push('cut-moved');
    const m = await vjail(['migrate', 'cut', `127.0.0.1:${again.port}`, '--psk-file', key(), '--as', 'cut-moved', '-q'], { timeoutMs: 180_000 });
    expect(m.stderr).toBe('');
    expect(m.exitCode).toBe(0);
    await again.done;
    expect(await waitForState('cut', (st) => st === 'exited')).toBe(true);
    expect(await jailState('cut-moved')).toBe('running');
    expect(await verdict(jail.dir)).toMatch(/^ok [1-9]\d*$/);
  }, 300_000);

  it('where writes cannot be tracked it says so in one line and sends all of the memory once stopped; every page arrives', async () => {
    const jail = await startDirtier('untracked');
    const server = await pageServer(key());
    started.push('moved-whole');
    process.env.VJAIL_PRE_DUMP_FALLBACK = '1';
    let r;
    try {
      r = await vjail(['migrate', 'untracked', `127.0.0.1:${server.port}`, '--psk-file', key(), '--as', 'moved-whole', '--json', '-q'], { timeoutMs: 180_000 });
    } finally {
      delete process.env.VJAIL_PRE_DUMP_FALLBACK;
    }
    expect(r.exitCode).toBe(0);
    expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1);
    expect(r.stderr).toMatch(/writes cannot be tracked here \(VJAIL_PRE_DUMP_FALLBACK=1 forces the full copy\): all of the jail's memory is sent while it is stopped/);
    const result = JSON.parse(r.stdout);
    expect(result).toMatchObject({ ok: true, preDump: false, memorySentRunning: null });
    await server.done;
    expect(await waitForState('untracked', (st) => st === 'exited')).toBe(true);
    expect(await verdict(jail.dir)).toMatch(/^ok [1-9]\d*$/);
  }, 240_000);

  it('a page server of another protocol version is refused in one line before the jail is touched', async () => {
    await startDirtier('older');
    // What a page server of version 1 says first.
    const old = createServer((c) => {
      c.on('error', () => {});
      c.end(Buffer.concat([Buffer.from('vjail-page-server 1\n'), Buffer.alloc(32, 7)]));
    });
    await new Promise<void>((resolve) => old.listen(0, '127.0.0.1', resolve));
    const port = (old.address() as AddressInfo).port;
    const r = await vjail(['migrate', 'older', `127.0.0.1:${port}`, '--psk-file', key(), '-q'], { timeoutMs: 60_000 });
    old.close();
    expect(r.exitCode).toBe(2);
    expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1);
    expect(r.stderr).toMatch(/speaks migration protocol 1, this vjail 2: run the same vjail version on both machines/);
    expect(await jailState('older')).toBe('running');
  }, 120_000);

  it('a sender of another protocol version is told so by the page server', async () => {
    const server = await pageServer(key());
    const sock = connect({ host: '127.0.0.1', port: server.port });
    sock.on('error', () => {});
    let got = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => (got = Buffer.concat([got, d])));
    await new Promise<void>((resolve) => sock.once('connect', resolve));
    sock.write(Buffer.concat([Buffer.from('vjail-migrate 1\n'), Buffer.alloc(32, 1)]));
    expect(await waitFor(() => got.includes(0x0a, 21 + 32), 30_000)).toBe(true);
    sock.destroy();
    const answer = got.subarray('vjail-page-server 2\n'.length + 32);
    expect(answer[0]).toBe(0);
    expect(answer.subarray(1).toString()).toMatch(/^the sender speaks migration protocol 1, this page server 2: run the same vjail version on both machines\n$/);
    await server.done;
  }, 60_000);

  it('a request whose launch hint is not what vjail sends is refused in the handshake, in one line', async () => {
    const server = await pageServer(key());
    const bad = { profile: 'host', emulate: 'clone3', pidNamespace: false, userNamespace: null, policy: false } as unknown as LaunchHint;
    const error = await connectPageServer('127.0.0.1', server.port, readFileSync(key()), { name: 'hinted', launch: bad }).then(
      (c) => (c.sock.destroy(), null),
      (e: Error) => e,
    );
    expect(error?.message).toBe(`the page server at 127.0.0.1:${server.port} refused: the request's "launch" is not what a vjail migrate of this version sends`);
    await server.done;
    expect(await jailState('hinted')).toBe('');
  }, 60_000);
});
