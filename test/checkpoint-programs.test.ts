/**
 * Real programs checkpointed and restored on this host, with clients that
 * must notice nothing but a pause: python3's http.server, a shell
 * pipeline with data in flight, python3 multiprocessing workers sharing
 * memory, two processes talking over loopback TCP (saved in repair mode),
 * and redis-server with a client connection held across the checkpoint.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, execaSync } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { processTree, within } from './helpers/bounded.js';
import { repoRoot, vjailBin } from './helpers/fixtures.js';
import { alive, pidOf, type Started, vjailStart as start, waitFor } from './helpers/run.js';

/** python3 by its full path: the jail runs exactly this argv, which pidOf looks for. */
const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : execaSync('sh', ['-c', 'command -v python3']).stdout.trim();
const program = (name: string): string => join(repoRoot, 'test', 'programs', name);

/** Every jail a test started; one a failed test left running is ended after it. */
const jails: { jail: Started; done: boolean }[] = [];
function vjailStart(args: string[]): Started {
  const entry = { jail: start(args), done: false };
  void entry.jail.then(() => (entry.done = true));
  jails.push(entry);
  return entry.jail;
}
afterEach(async () => {
  const left = jails.splice(0);
  for (const e of left) if (!e.done) e.jail.kill('SIGKILL');
  await within(Promise.allSettled(left.map((e) => e.jail)), 'the jails a test left running to end after SIGKILL', { root: process.pid });
});

/** Wait (bounded) for a started vjail to end; past the bound, fail naming `what`, with its process tree. */
async function ended(jail: Started, what: string): Promise<Awaited<Started>> {
  return within(jail, what, { root: jail.pid });
}

/** Wait for `cond`; if it never holds, fail with what the jail said (and its process tree). */
async function expectProgress(cond: () => boolean, jail: Started, what: string): Promise<void> {
  if (await waitFor(cond, 30_000)) return;
  const tree = jail.pid === undefined ? '' : processTree(jail.pid);
  jail.kill('SIGKILL');
  const r = await ended(jail, `the jail to end after SIGKILL (it made no progress towards ${what})`);
  expect.fail(`waited 30 s for ${what}; the jail's processes were:\n${tree}\nit exited with ${r.exitCode} and said: ${r.stderr}`);
}

/** How long a checkpoint command may take here (it verifies the image too) before the test fails naming it. */
const CHECKPOINT_MS = 30_000;

/** Run `vjail ARGS` (a checkpoint) to its end, at most CHECKPOINT_MS: past that, fail naming `what`, with its process tree, and kill it. */
async function vjail(args: string[], what = `vjail ${args.join(' ')}`) {
  const child = execa('node', [vjailBin, ...args], { reject: false, input: '' });
  return within(child, what, { ms: CHECKPOINT_MS, root: child.pid, onTimeout: () => (child.kill('SIGKILL'), 'vjail was killed') });
}

/** The process whose command line (as it set its title) starts with `title`. */
function pidByTitle(title: string): number | undefined {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').startsWith(`${title}\0`)) return Number(d);
    } catch {
      // gone
    }
  }
  return undefined;
}

/** Poll an asynchronous check until it holds (bounded). */
async function waitForAsync(cond: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond().catch(() => false)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/** A TCP port on 127.0.0.1 nobody listens on right now. */
async function freePort(): Promise<number> {
  const srv = createServer();
  await within(new Promise<void>((r) => srv.listen(0, '127.0.0.1', r)), 'a listener on a free port of 127.0.0.1');
  const port = (srv.address() as { port: number }).port;
  await within(new Promise((r) => srv.close(r)), `the listener on port ${port} to close`);
  return port;
}

/** CPU time (clock ticks, all threads) a process used so far. */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime, stime
}

/**
 * The process is idle, not spinning: over a second it used a small part of
 * the 100 ticks a busy loop would (a load that slows it only lowers this).
 */
async function expectIdle(pid: number): Promise<void> {
  const before = cpuTicks(pid);
  await new Promise((r) => setTimeout(r, 1000));
  expect(cpuTicks(pid) - before).toBeLessThan(30);
}

function lines(path: string): string[] {
  return existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean) : [];
}

interface Manifest {
  pipes: { data: string | null }[];
  descriptions: { kind: string; sendQueue?: string | null; recvQueue?: string | null; state?: string }[];
}
const manifest = (image: string): Manifest => JSON.parse(readFileSync(join(image, 'manifest.json'), 'utf8'));

/** Checkpoint the jail's process PID into DIR/image (killing it); the image's path. */
async function checkpoint(pid: number | undefined, dir: string, run: Started, extra: string[] = []): Promise<string> {
  expect(pid).toBeDefined();
  const image = join(dir, 'image');
  const cp = await vjail(['checkpoint', ...extra, '--pid', String(pid), '--image', image]);
  expect(cp.stderr).toMatch(/checkpoint 5\/5 kill/);
  expect(cp.exitCode).toBe(0);
  await ended(run, `the checkpointed jail's vjail run (pid ${run.pid}) to end once the checkpoint killed the jail`);
  return image;
}

async function getText(url: string): Promise<string> {
  const r = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  if (r.status !== 200) throw new Error(`${url}: HTTP ${r.status}`);
  return r.text();
}

// Every wait in a test has a bound of its own that names what did not happen; the test's limit is only the last resort.
describe('real programs checkpointed and restored', { timeout: 180_000 }, () => {
  for (const pidNs of [false, true]) {
    it(`python3 -m http.server${pidNs ? ' (--pid-ns)' : ''} serves the same file on the same port after a restore, idle`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'vjail-programs-http-'));
      writeFileSync(join(dir, 'hello.txt'), 'hello from the jail\n');
      const port = await freePort();
      const url = `http://127.0.0.1:${port}/hello.txt`;
      const argv = [python, '-m', 'http.server', String(port), '--bind', '127.0.0.1', '--directory', dir];
      const run = vjailStart(['run', ...(pidNs ? ['--pid-ns'] : []), '--', ...argv]);
      if (!(await waitForAsync(async () => (await getText(url)) !== '', 30_000))) await expectProgress(() => false, run, `http.server on port ${port}`);
      expect(await getText(url)).toBe('hello from the jail\n');
      const image = await checkpoint(pidOf(argv, pidNs ? 2 : undefined), dir, run);

      const restored = vjailStart(['restore', image]);
      // The listener is back before the process runs again: the first request is simply answered.
      await expectProgress(() => pidOf(argv) !== undefined, restored, 'the restored http.server');
      expect(await getText(url)).toBe('hello from the jail\n');
      expect(await getText(url)).toBe('hello from the jail\n');
      const pid = pidOf(argv)!;
      await expectIdle(pid);
      // Its own SIGINT handling (KeyboardInterrupt) ends it cleanly.
      process.kill(pid, 'SIGINT');
      const r = await ended(restored, 'the restored http.server to end after SIGINT');
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/"GET \/hello.txt HTTP\/1.1" 200/);
    });
  }

  it('a shell pipeline checkpointed with data in flight goes on with no gap, no repeat, and ends by SIGPIPE', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-programs-pipe-'));
    const out = join(dir, 'out');
    const stop = join(dir, 'stop');
    // The reader (dash's `read`, a byte at a time) is far slower than seq and cat: both pipes stay full.
    const script = `seq 1 1000000000 | cat | while read x; do echo "$x"; case $x in *000) [ -e ${stop} ] && break;; esac; done > ${out}`;
    const argv = ['/bin/sh', '-c', script];
    const run = vjailStart(['run', '--pid-ns', '--', ...argv]);
    await expectProgress(() => lines(out).length >= 20_000, run, '20000 lines');
    const image = await checkpoint(pidOf(argv, 2), dir, run);
    const pipes = manifest(image).pipes;
    expect(pipes).toHaveLength(2);
    expect(pipes.filter((p) => p.data !== null).length).toBeGreaterThanOrEqual(1);
    const before = lines(out).length;

    const restored = vjailStart(['restore', image]);
    await expectProgress(() => lines(out).length >= before + 20_000, restored, '20000 more lines');
    // The reader stops; cat and then seq die of SIGPIPE, and the pipeline ends.
    writeFileSync(stop, '');
    const r = await ended(restored, 'the restored pipeline to end once its reader stopped');
    expect(r.exitCode, r.stderr).toBe(0);
    const all = lines(out);
    expect(all.length).toBeGreaterThanOrEqual(before + 20_000);
    const wrong = all.findIndex((l, i) => l !== String(i + 1));
    expect(wrong, `line ${wrong + 1} is ${all[wrong]}`).toBe(-1);
  });

  it('python3 multiprocessing workers keep sharing an Array and an anonymous shared mmap across a restore', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-programs-shm-'));
    const out = join(dir, 'out');
    const argv = [python, program('shared-counter.py'), dir];
    const run = vjailStart(['run', '--pid-ns', '--', ...argv]);
    await expectProgress(() => lines(out).length >= 20, run, '20 rounds');
    const image = await checkpoint(pidOf(argv, 2), dir, run);
    const before = lines(out).length;
    const restored = vjailStart(['restore', image]);
    await expectProgress(() => lines(out).length >= before + 20, restored, '20 more rounds');
    writeFileSync(join(dir, 'stop'), '');
    const r = await ended(restored, 'the restored multiprocessing workers to end once told to stop');
    expect(r.exitCode, r.stderr).toBe(0);
    // Every round, every worker's write seen by the parent: totals are 3 per round.
    lines(out).forEach((l, i) => expect(l).toBe(`${i + 1} ${3 * (i + 1)} ${3 * (i + 1)}`));
  });

  it('two processes over loopback TCP: refused without --tcp-established (the jail runs on), then saved in repair mode and restored with no message lost or repeated, their listener too', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-programs-tcp-'));
    const server = join(dir, 'server');
    const argv = [python, program('tcp-pingpong.py'), dir, 'ping'];
    const run = vjailStart(['run', '--pid-ns', '--', ...argv]);
    await expectProgress(() => lines(server).length >= 10, run, '10 messages');
    const pid = pidOf(argv, 2);

    const refused = await vjail(['checkpoint', '--pid', String(pid), '--image', join(dir, 'refused')]);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toMatch(/an established TCP connection 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+ \(vjail checkpoint --tcp-established saves it\)/);
    expect(existsSync(join(dir, 'refused'))).toBe(false);
    const seen = lines(server).length;
    await expectProgress(() => lines(server).length >= seen + 5, run, 'the exchange to go on after the refusal');


    const image = await checkpoint(pid, dir, run, ['--tcp-established']);
    expect(manifest(image).descriptions.filter((d) => d.kind === 'tcp')).toHaveLength(2);
    expect(manifest(image).descriptions.filter((d) => d.kind === 'inet' && d.state === 'listening')).toHaveLength(1);
    const before = lines(server).length;
    const restored = vjailStart(['restore', image]);
    await expectProgress(() => lines(server).length >= before + 10, restored, '10 more messages');
    await expectIdle(pidOf(argv, 2)!);
    writeFileSync(join(dir, 'stop'), '');
    const r = await ended(restored, 'the restored ping-pong to end once told to stop');
    expect(r.exitCode, r.stderr).toBe(0);
    const got = lines(server);
    expect(got.pop()).toBe('end reuse=0');
    got.forEach((l, i) => expect(l).toBe(String(2 * i)));
    lines(join(dir, 'client')).forEach((l, i) => expect(l).toBe(String(2 * i + 1)));
  });

  it('a loopback TCP stream checkpointed with both queues full (left running, then killed) loses and repeats nothing, and keeps its options', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-programs-tcpq-'));
    const server = join(dir, 'server');
    const reads = (): number => lines(server).filter((l) => l.startsWith('read ')).length;
    const queued = (): number[] => lines(server).filter((l) => l.startsWith('queued ')).map((l) => Number(l.split(' ')[1]));
    const argv = [python, program('tcp-pingpong.py'), dir, 'stream'];
    const run = vjailStart(['run', '--pid-ns', '--', ...argv]);
    await expectProgress(() => reads() >= 5, run, 'the stream to flow');
    const pid = pidOf(argv, 2);
    // Saved and left running: the connections leave repair mode as they were, and the stream flows on.
    const left = await vjail(['checkpoint', '--tcp-established', '--leave-running', '--pid', String(pid), '--image', join(dir, 'left')]);
    expect(left.exitCode, left.stderr).toBe(0);
    const seen = reads();
    await expectProgress(() => reads() >= seen + 5, run, 'the stream to flow after --leave-running');

    // The reader pauses: its receive queue fills (past a fresh socket's buffer), then the writer's send queue.
    writeFileSync(join(dir, 'pause'), '');
    await expectProgress(() => {
      const q = queued();
      return q.length >= 10 && q.at(-1)! > 262_144 && q.at(-1) === q.at(-5);
    }, run, 'the receive queue to fill');
    const image = await checkpoint(pid, dir, run, ['--tcp-established']);
    const conns = manifest(image).descriptions.filter((d) => d.kind === 'tcp');
    expect(conns).toHaveLength(2);
    expect(conns.filter((d) => d.sendQueue)).toHaveLength(1);
    expect(conns.filter((d) => d.recvQueue)).toHaveLength(1);
    const full = queued().at(-1);

    const restored = vjailStart(['restore', image]);
    const before = queued().length;
    await expectProgress(() => queued().length >= before + 3, restored, 'the restored reader');
    // The receive queue came back whole (the window the restored peers announce may let a little more in).
    expect(queued().at(-1)).toBeGreaterThanOrEqual(full!);
    rmSync(join(dir, 'pause'));
    const again = reads();
    await expectProgress(() => reads() >= again + 5, restored, 'the stream to flow again');
    writeFileSync(join(dir, 'stop'), '');
    const r = await ended(restored, 'the restored stream to end once told to stop (the writer shuts its side down, the reader reads to the end)');
    expect(r.exitCode, r.stderr).toBe(0);
    const sent = lines(join(dir, 'client')).at(-1)!;
    expect(sent).toMatch(/^sent \d+$/);
    // The accepted connection kept the SO_REUSEADDR it had from its listener, through both checkpoints.
    expect(lines(server).slice(-2)).toEqual([`received ${sent.split(' ')[1]}`, 'end reuse=1']);
  });

  it('redis-server keeps its keys, and a client connection held across the checkpoint goes on', async () => {
    const redis = '/usr/bin/redis-server';
    expect(existsSync(redis), 'redis-server is not installed (apt-get install redis-server; .ci/apt-packages lists it)').toBe(true);
    const dir = mkdtempSync(join(tmpdir(), 'vjail-programs-redis-'));
    const port = await freePort();
    const argv = [redis, '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir];
    // redis-server sets its title over its arguments.
    const title = `${redis} 127.0.0.1:${port}`;
    const run = vjailStart(['run', '--pid-ns', '--', ...argv]);
    const ping = async (): Promise<boolean> => {
      const c = await Resp.connect(port);
      try {
        return (await c.command('PING')) === '+PONG';
      } finally {
        c.close();
      }
    };
    if (!(await waitForAsync(ping, 30_000))) await expectProgress(() => false, run, `redis-server on port ${port}`);
    const held = await Resp.connect(port);
    try {
      for (let i = 0; i < 100; i++) expect(await held.command('SET', `key:${i}`, `value ${i}`)).toBe('+OK');
      expect(await held.command('RPUSH', 'list', 'a', 'b', 'c')).toBe(':3');
      const image = await checkpoint(pidByTitle(title), dir, run, ['--tcp-established']);

      const restored = vjailStart(['restore', image]);
      await expectProgress(() => pidByTitle(title) !== undefined, restored, 'the restored redis-server');
      // The same connection: the server side was restored in repair mode, nothing was reset.
      expect(await held.command('GET', 'key:42')).toBe('$8\r\nvalue 42');
      expect(await held.command('INCR', 'counter')).toBe(':1');
      // A new connection, as any client would make.
      const fresh = await Resp.connect(port);
      try {
        for (let i = 0; i < 100; i += 9) expect(await fresh.command('GET', `key:${i}`)).toBe(`$${`value ${i}`.length}\r\nvalue ${i}`);
        expect(await fresh.command('LLEN', 'list')).toBe(':3');
        expect(await fresh.command('INCR', 'counter')).toBe(':2');
      } finally {
        fresh.close();
      }
      const pid = pidByTitle(title)!;
      await expectIdle(pid);
      expect(alive(pid)).toBe(true);
      expect(await held.command('SHUTDOWN', 'NOSAVE')).toBe('');
      const r = await ended(restored, 'the restored redis-server to end after SHUTDOWN');
      expect(r.exitCode, r.stderr).toBe(0);
    } finally {
      held.close();
    }
  });
});

/** A minimal RESP client: one command at a time; a reply as its first line (and a bulk string's data); '' once the server closed. */
class Resp {
  private buf = '';
  private closed = false;
  private wake: (() => void) | null = null;
  private constructor(private readonly sock: Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      this.wake?.();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    sock.on('error', () => undefined);
  }

  static connect(port: number): Promise<Resp> {
    return new Promise((resolve, reject) => {
      const sock = new Socket();
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error(`connecting to 127.0.0.1:${port} took over 10 s`));
      }, 10_000);
      sock.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      sock.connect(port, '127.0.0.1', () => {
        clearTimeout(timer);
        resolve(new Resp(sock));
      });
    });
  }

  /** The reply in buf, if whole: its text and length. */
  private reply(): { text: string; length: number } | null {
    const eol = this.buf.indexOf('\r\n');
    if (eol < 0) return null;
    const head = this.buf.slice(0, eol);
    if (head[0] !== '$' || head === '$-1') return { text: head, length: eol + 2 };
    const n = Number(head.slice(1));
    if (this.buf.length < eol + 2 + n + 2) return null;
    return { text: this.buf.slice(0, eol + 2 + n), length: eol + 2 + n + 2 };
  }

  async command(...args: string[]): Promise<string> {
    this.sock.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
    const end = Date.now() + 10_000;
    for (;;) {
      const r = this.reply();
      if (r) {
        this.buf = this.buf.slice(r.length);
        return r.text;
      }
      if (this.closed) return '';
      if (Date.now() > end) throw new Error(`no reply to ${args[0]} within 10 s`);
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, 100);
      });
      this.wake = null;
    }
  }

  close(): void {
    this.sock.destroy();
  }
}
