import { createReadStream, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, vjailBin } from './helpers/fixtures.js';
import { pidOf, vjail, waitFor } from './helpers/run.js';
import { jailState, pageServer, waitForState } from './helpers/migrate.js';
import { readImageStream, receiveImage, writeImageStream } from '../src/image/stream.js';
import { IMAGE_VERSION } from '../src/image/schema.js';

// Streams, compressed and encrypted images, and migration: the restored
// workload hashes its memory again (test/fixtures/bigmem.c) and must find
// the hash it had before the checkpoint.

const MIB = '16';
let bigmem: string;
let stateDir: string;
let work: string;
const started: string[] = [];

beforeAll(() => {
  bigmem = fixture('bigmem');
  stateDir = mkdtempSync(join(tmpdir(), 'vjail-stream-state-'));
  work = mkdtempSync(join(tmpdir(), 'vjail-stream-'));
  process.env.VJAIL_STATE_DIR = stateDir;
  for (const [name, bytes] of [['key', 32], ['other-key', 32], ['short-key', 31]] as const) {
    writeFileSync(join(work, name), Buffer.from(Array.from({ length: bytes }, () => Math.floor(Math.random() * 256))));
  }
});

afterAll(async () => {
  for (const name of started) await vjail(['kill', name, '--signal', 'KILL']);
  delete process.env.VJAIL_STATE_DIR;
});

const key = (name = 'key'): string => join(work, name);

/** A shell command line (the CLI as `vjail`, paths quoted) run to completion. */
async function sh(line: string, timeoutMs = 120_000) {
  return execa('sh', ['-c', line], { reject: false, timeout: timeoutMs, env: { VJAIL: `node ${vjailBin}` }, stdin: 'ignore' });
}

/** bigmem as a named detached jail in its own directory, once its memory is filled and hashed. */
async function startBigmem(name: string): Promise<{ dir: string; before: string }> {
  const dir = mkdtempSync(join(work, `${name}-`));
  started.push(name);
  const r = await vjail(['run', '--name', name, '--detach', '--', bigmem, dir, MIB]);
  expect(r.stderr).toBe('');
  expect(r.exitCode).toBe(0);
  expect(await waitFor(() => existsSync(join(dir, 'before')), 60_000)).toBe(true);
  return { dir, before: readFileSync(join(dir, 'before'), 'utf8') };
}

/** Let the restored copy go on (it waits for DIR/go), and the hash it computes then. */
async function hashAfter(dir: string): Promise<string> {
  writeFileSync(join(dir, 'go'), '');
  expect(await waitFor(() => existsSync(join(dir, 'after')), 60_000)).toBe(true);
  const h = readFileSync(join(dir, 'after'), 'utf8');
  rmSync(join(dir, 'after'));
  rmSync(join(dir, 'go'));
  return h;
}

async function kill(name: string): Promise<void> {
  await vjail(['kill', name, '--signal', 'KILL']);
  expect(await waitForState(name, (s) => !/running|ending/.test(s))).toBe(true);
}

async function listed(name: string): Promise<boolean> {
  return (await jailState(name)) !== '';
}

describe('image streams, compression and encryption', () => {
  let source: { dir: string; before: string };
  const images: Record<string, string> = {};
  const q = (s: string): string => `'${s}'`;
  const refused: string[] = [];

  beforeAll(async () => {
    source = await startBigmem('src');
    // One jail, several images of it: it only waits meanwhile, its memory the same for each.
    const variants: [string, string][] = [
      ['stream', '--image -'],
      ['stream-gzip', '--image - --compress gzip'],
      ['stream-zstd', '--image - --compress zstd'],
      ['stream-encrypted', `--image - --compress zstd --encrypt-key ${q(key())}`],
      ['dir-zstd', `--image ${q(join(work, 'dir-zstd'))} --compress zstd`],
      ['dir-encrypted', `--image ${q(join(work, 'dir-encrypted'))} --compress gzip --encrypt-key ${q(key())}`],
    ];
    for (const [name, args] of variants) {
      const out = name.startsWith('stream') ? join(work, `${name}.vjs`) : join(work, name);
      const r = await sh(`$VJAIL checkpoint src ${args} --leave-running -q${name.startsWith('stream') ? ` > ${q(out)}` : ''}`);
      expect(r.stderr, name).toBe('');
      expect(r.exitCode, name).toBe(0);
      images[name] = out;
    }
    await kill('src');
  }, 300_000);

  it('a stream starts with its preamble; compression and encryption are said there, and the data is not in the clear when encrypted', () => {
    const head = (name: string): string => readFileSync(images[name]!).subarray(0, 200).toString('latin1').split('\n')[0]!;
    expect(head('stream')).toBe('vjail-stream 1 none none');
    expect(head('stream-gzip')).toBe('vjail-stream 1 gzip none');
    expect(head('stream-zstd')).toBe('vjail-stream 1 zstd none');
    expect(head('stream-encrypted')).toMatch(/^vjail-stream 1 zstd aes-256-gcm [0-9a-f]{64} [0-9a-f]{32}$/);
    expect(readdirSync(images['dir-zstd']!)).toEqual(['image.vjs']);
    expect(readFileSync(images['stream-encrypted']!).includes(Buffer.from('"processes"'))).toBe(false);
    expect(readFileSync(images.stream!).includes(Buffer.from('"processes"'))).toBe(true);
  });

  it.each([
    ['stream', (f: string) => `$VJAIL restore - --name NAME --detach < '${f}'`],
    ['stream-gzip', (f: string) => `$VJAIL restore - --name NAME --detach < '${f}'`],
    ['stream-zstd', (f: string) => `cat '${f}' | $VJAIL restore - --name NAME --detach`],
    ['stream-encrypted', (f: string) => `$VJAIL restore - --encrypt-key '${key()}' --name NAME --detach < '${f}'`],
    ['dir-zstd', (f: string) => `$VJAIL restore '${f}' --name NAME --detach`],
    ['dir-encrypted', (f: string) => `$VJAIL restore '${f}' --encrypt-key '${key()}' --name NAME --detach`],
  ])('%s restores with the memory hash it had', async (name, cmd) => {
    const as = `r-${name}`;
    started.push(as);
    const r = await sh(cmd(images[name]!).replace('NAME', as));
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(await hashAfter(source.dir)).toBe(source.before);
    await kill(as);
  }, 120_000);

  it('inspect reads streams and packed images, with their key', async () => {
    const r = await sh(`$VJAIL inspect - < '${images.stream}'`);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`\\(format ${IMAGE_VERSION}, verified\\)`));
    const e = await vjail(['inspect', images['dir-encrypted']!, '--encrypt-key', key()]);
    expect(e.exitCode).toBe(0);
    expect(e.stdout).toMatch(/bigmem/);
  });

  /** A copy of an image (a stream file or a packed directory's stream) damaged by `how`. */
  const damaged = (name: string, how: (b: Buffer) => Buffer): string => {
    const from = images[name]!;
    const file = statSync(from).isDirectory() ? join(from, 'image.vjs') : from;
    const out = join(work, `bad-${name}-${Math.random().toString(36).slice(2)}.vjs`);
    writeFileSync(out, how(readFileSync(file)));
    return out;
  };
  const flip = (at: number) => (b: Buffer): Buffer => {
    const c = Buffer.from(b);
    c[Math.floor(c.length * at)]! ^= 0x40;
    return c;
  };
  const cut = (at: number) => (b: Buffer): Buffer => b.subarray(0, Math.floor(b.length * at));

  it.each([
    ['a flipped bit', 'stream', flip(0.5), [], /the stream on stdin is damaged: frame \d+ does not match its checksum/, true],
    ['cut short', 'stream', cut(0.7), [], /the stream on stdin is truncated: it ends before its end frame/, true],
    ['cut short by its last bytes', 'stream', cut(0.999), [], /the stream on stdin is truncated: it ends before its end frame/, false],
    ['a byte after its end', 'stream', (b: Buffer) => Buffer.concat([b, Buffer.from('x')]), [], /is damaged: bytes follow its end frame/, false],
    ['gzip, a flipped bit', 'stream-gzip', flip(0.5), [], /the stream on stdin is damaged: (its gzip data does not decompress|frame \d+ does not match its checksum)/, false],
    ['gzip, cut short', 'stream-gzip', cut(0.5), [], /the stream on stdin is truncated: its gzip data ends early/, false],
    ['zstd, a flipped bit', 'stream-zstd', flip(0.5), [], /the stream on stdin is damaged: (its zstd data does not decompress|frame \d+ does not match its checksum)/, false],
    ['zstd, cut short', 'stream-zstd', cut(0.5), [], /the stream on stdin is truncated: its zstd data ends early/, true],
    ['encrypted, a flipped bit', 'stream-encrypted', flip(0.5), ['--encrypt-key', 'KEY'], /is damaged: encrypted chunk \d+ does not authenticate/, true],
    ['encrypted, cut short', 'stream-encrypted', cut(0.5), ['--encrypt-key', 'KEY'], /the stream on stdin is truncated: encrypted chunk \d+ is cut short/, false],
    ['encrypted, cut between two chunks', 'stream-encrypted', (b: Buffer) => b.subarray(0, b.indexOf(0x0a) + 1 + 5 + b.readUInt32BE(b.indexOf(0x0a) + 1) + 16), ['--encrypt-key', 'KEY'], /the stream on stdin is truncated: it ends before its last encrypted chunk/, false],
    ['encrypted, another key', 'stream-encrypted', (b: Buffer) => b, ['--encrypt-key', 'OTHER'], /the stream on stdin was encrypted with another key; give the key it was made with/, true],
    ['encrypted, no key', 'stream-encrypted', (b: Buffer) => b, [], /the stream on stdin is encrypted; give its key with --encrypt-key FILE/, false],
    ['not encrypted, a key given', 'stream', (b: Buffer) => b, ['--encrypt-key', 'KEY'], /the stream on stdin is not encrypted, but a key was given/, false],
    ['empty', 'stream', (b: Buffer) => b.subarray(0, 0), [], /the stream on stdin is empty/, true],
    ['not a stream', 'stream', (b: Buffer) => Buffer.from(`vjail-image 5\n${b.toString('latin1')}`), [], /the stream on stdin is not a vjail image stream/, false],
  ] as const)('a stream refused before anything runs: %s', async (_what, name, how, extra, message, cli) => {
    const bad = damaged(name, how);
    if (!cli) {
      // The same reader as restore's, without starting a CLI: it refuses, and leaves nothing behind.
      const dest = join(mkdtempSync(join(work, 'rx-')), 'image');
      const k = extra.length ? readFileSync(extra[1] === 'KEY' ? key() : key('other-key')) : undefined;
      const e = await receiveImage(createReadStream(bad) as AsyncIterable<Buffer>, dest, { key: k, what: 'the stream on stdin' }).then(() => undefined, (x: Error) => x);
      expect(e?.message).toMatch(message);
      expect(e?.message.split('\n')).toHaveLength(1);
      expect(existsSync(dest)).toBe(false);
      return;
    }
    const as = `bad-${Math.random().toString(36).slice(2, 8)}`;
    const args = extra.map((a) => (a === 'KEY' ? `'${key()}'` : a === 'OTHER' ? `'${key('other-key')}'` : a)).join(' ');
    const r = await sh(`$VJAIL restore - ${args} --name ${as} --detach < '${bad}'`);
    expect(r.exitCode).toBe(2);
    expect(r.stderr.split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(message);
    // Nothing of the jail was started: no copy of the workload (and no jail of that name, below).
    expect(pidOf([bigmem, source.dir, MIB])).toBeUndefined();
    refused.push(as);
  });

  it('none of the refused streams left a jail behind', async () => {
    expect(refused.length).toBe(6);
    const names = (JSON.parse((await vjail(['ps', '--json'])).stdout) as { name: string }[]).map((j) => j.name);
    for (const as of refused) expect(names).not.toContain(as);
  });

  it('a damaged packed image directory is refused in one line too', async () => {
    const dir = mkdtempSync(join(work, 'packed-bad-'));
    const bad = damaged('dir-zstd', flip(0.3));
    writeFileSync(join(dir, 'image.vjs'), readFileSync(bad));
    const r = await vjail(['restore', dir]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr.split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/is damaged/);
    truncateSync(join(dir, 'image.vjs'), 1000);
    const t = await vjail(['restore', dir]);
    expect(t.exitCode).toBe(2);
    expect(t.stderr).toMatch(/is (truncated|damaged)/);
  });

  it('key files missing or of the wrong size, and --json with --image -, are refused in one line; the jail runs on', async () => {
    const jail = await startBigmem('keys');
    for (const [k, message] of [
      [join(work, 'no-such-key'), /--encrypt-key .*no-such-key: no such file; make a key with: head -c 32 \/dev\/urandom/],
      [key('short-key'), /--encrypt-key .*short-key: the file is 31 bytes; a key file holds exactly 32 bytes/],
    ] as const) {
      const r = await vjail(['checkpoint', 'keys', '--image', join(work, 'never'), '--encrypt-key', k]);
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.split('\n')).toHaveLength(1);
      expect(existsSync(join(work, 'never'))).toBe(false);
    }
    const z = await vjail(['checkpoint', 'keys', '--image', '-', '--json']);
    expect(z.exitCode).toBe(2);
    expect(z.stderr).toMatch(/--json prints on stdout, where --image - sends the image/);
    // The jail ran on through all of it.
    expect(await jailState('keys')).toBe('running');
    expect(pidOf([bigmem, jail.dir, MIB])).toBeDefined();
    await kill('keys');
  });

  it('a stream whose reader goes away leaves the jail running', async () => {
    const jail = await startBigmem('epipe');
    const r = await sh(`$VJAIL checkpoint epipe --image - -q | head -c 1000 > /dev/null`);
    expect(r.exitCode).toBe(0);
    expect(pidOf([bigmem, jail.dir, MIB])).toBeDefined();
    expect(await hashAfter(jail.dir)).toBe(jail.before);
  });
});

describe('the stream reader, on streams made by hand', () => {
  /** A stream of the given files, written and read back into a sink that records what it was given. */
  async function roundTrip(files: { name: string; data: Buffer; size?: number }[], opts: { key?: Buffer } = {}) {
    const out = new PassThrough();
    const chunks: Buffer[] = [];
    out.on('data', (c: Buffer) => chunks.push(c));
    await writeImageStream({
      async *files() {
        for (const f of files) yield { name: f.name, size: f.size ?? f.data.length, chunks: async function* () { yield f.data; } };
      },
    }, out, opts).catch((e: unknown) => e);
    const got: string[] = [];
    const sink = { begin: (name: string, size: number) => void got.push(`${name}:${size}`), data: () => {}, end: () => {} };
    const read = await readImageStream((async function* () { yield Buffer.concat(chunks); })(), sink, { key: opts.key, what: 'the stream' }).then(() => 'ok', (e: Error) => e.message);
    return { read, got };
  }

  it('a file name an image does not have (a path) is refused before it is written', async () => {
    const r = await roundTrip([{ name: '../../etc/cron.d/x', data: Buffer.from('evil') }]);
    expect(r.read).toMatch(/the stream is damaged: frame \d+ names a file "..\/..\/etc\/cron.d\/x" that images do not have/);
    expect(r.got).toEqual([]);
  });

  it('a file given twice is refused', async () => {
    const r = await roundTrip([{ name: 'blob-0.img', data: Buffer.from('a') }, { name: 'blob-0.img', data: Buffer.from('b') }]);
    expect(r.read).toMatch(/blob-0\.img appears twice/);
  });

  it('files of several chunks arrive whole, with their sizes', async () => {
    const big = Buffer.alloc(3 * (1 << 20) + 5, 7);
    const r = await roundTrip([{ name: 'pages-0.img', data: big }, { name: 'manifest.json', data: Buffer.from('{}') }], { key: Buffer.alloc(32, 1) });
    expect(r.read).toBe('ok');
    expect(r.got).toEqual([`pages-0.img:${big.length}`, 'manifest.json:2']);
  });
});

describe('vjail migrate to a page server over loopback', () => {
  it('moves the jail: restored there with the same memory hash, ended here', async () => {
    const jail = await startBigmem('mover');
    const server = await pageServer(key());
    started.push('moved');
    const r = await vjail(['migrate', 'mover', `127.0.0.1:${server.port}`, '--psk-file', key(), '--as', 'moved', '--compress', 'zstd', '--json', '-q'], { timeoutMs: 120_000 });
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    const result = JSON.parse(r.stdout);
    expect(result).toMatchObject({ ok: true, jail: 'mover', as: 'moved', compress: 'zstd' });
    expect(result.stoppedMs).toBeGreaterThan(0);
    expect(result.totalMs).toBeGreaterThanOrEqual(result.stoppedMs);
    await server.done;
    expect(server.log()).toMatch(/restored jail "moved" \(pid \d+\)/);
    expect(await waitForState('mover', (st) => st === 'exited')).toBe(true);
    expect(await listed('moved')).toBe(true);
    expect(await hashAfter(jail.dir)).toBe(jail.before);
  }, 180_000);

  it('a sender without the key is refused before anything of the jail is touched', async () => {
    const jail = await startBigmem('stays');
    const server = await pageServer(key());
    const r = await vjail(['migrate', 'stays', `127.0.0.1:${server.port}`, '--psk-file', key('other-key'), '--as', 'never']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr.split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/refused: the sender does not hold this page server's pre-shared key \(--psk-file\); the jail was left as it was/);
    await server.done;
    expect(await listed('never')).toBe(false);
    expect(pidOf([bigmem, jail.dir, MIB])).toBeDefined();
    const none = await vjail(['migrate', 'stays', `127.0.0.1:${server.port}`, '--psk-file', key()]);
    expect(none.exitCode).toBe(2);
    expect(none.stderr).toMatch(/cannot connect to the page server at 127\.0\.0\.1:\d+: ECONNREFUSED/);
    expect(await hashAfter(jail.dir)).toBe(jail.before);
  }, 120_000);

  it('an answer forged on the way (it does not authenticate) leaves the jail running here', async () => {
    const jail = await startBigmem('forged');
    await startBigmem('taken-too'); // the receiver's real answer: it could not restore
    const server = await pageServer(key());
    // Someone between the two, without the key, relays everything but says "restored".
    const proxy = createServer({ allowHalfOpen: true }, (c) => {
      const u = connect({ host: '127.0.0.1', port: server.port, allowHalfOpen: true });
      c.on('error', () => {});
      u.on('error', () => {});
      c.pipe(u);
      u.on('data', (d: Buffer) => c.write(d[0] === 0x7b ? Buffer.from(`{"ok":true,"name":"taken-too","pid":1} ${'0'.repeat(64)}\n`) : d));
      u.on('end', () => c.end());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const port = (proxy.address() as AddressInfo).port;
    const r = await vjail(['migrate', 'forged', `127.0.0.1:${port}`, '--psk-file', key(), '--as', 'taken-too', '-q'], { timeoutMs: 120_000 });
    proxy.close();
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/the answer from 127\.0\.0\.1:\d+ does not authenticate with the pre-shared key; the jail runs on here/);
    await server.done;
    expect(pidOf([bigmem, jail.dir, MIB])).toBeDefined();
    expect(await jailState('forged')).toBe('running');
    expect(await hashAfter(jail.dir)).toBe(jail.before);
    await kill('taken-too');
  }, 120_000);

  it('when the receiver cannot restore, the jail runs on here', async () => {
    const jail = await startBigmem('fallback');
    // The name is taken there (here: the same state directory), so the receiver's restore fails.
    await startBigmem('taken');
    const server = await pageServer(key());
    const r = await vjail(['migrate', 'fallback', `127.0.0.1:${server.port}`, '--psk-file', key(), '--as', 'taken', '-q'], { timeoutMs: 120_000 });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/could not restore the jail \(.*taken.*\); the jail runs on here/);
    await server.done;
    expect(pidOf([bigmem, jail.dir, MIB])).toBeDefined();
    expect(await jailState('fallback')).toBe('running');
    expect(await hashAfter(jail.dir)).toBe(jail.before);
    await kill('taken');
  }, 120_000);
});
