/**
 * The byte layers under an image stream (docs/IMAGE.md, "Streams"):
 * compression (gzip by node:zlib, zstd by the zstd program) and encryption
 * (AES-256-GCM in chunks, each authenticated with its index and whether it
 * is the last, so that a reordered, cut or edited stream fails to decrypt).
 * Each layer is an async generator of Buffers in, Buffers out.
 */
import { spawn } from 'node:child_process';
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { Readable } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';
import { ImageError } from './errors.js';

export const COMPRESSIONS = ['none', 'gzip', 'zstd'] as const;
export type Compression = (typeof COMPRESSIONS)[number];

/** Size of an AES-256 key, and of a key file. */
export const KEY_BYTES = 32;

/**
 * A key file: exactly 32 bytes, read from a regular file. `flag` names the
 * option in the messages (--encrypt-key, --psk-file).
 */
export function readKeyFile(path: string, flag: string): Buffer {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ImageError(`${flag} ${path}: no such file; make a key with: head -c 32 /dev/urandom > ${path}`);
    throw new ImageError(`${flag} ${path}: cannot be read (${code ?? (e as Error).message})`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new ImageError(`${flag} ${path}: not a regular file; a key file holds exactly ${KEY_BYTES} bytes`);
    if (st.size !== KEY_BYTES) {
      throw new ImageError(`${flag} ${path}: the file is ${st.size} bytes; a key file holds exactly ${KEY_BYTES} bytes (make one with: head -c 32 /dev/urandom > FILE)`);
    }
    const key = Buffer.alloc(KEY_BYTES);
    if (readSync(fd, key, 0, KEY_BYTES, 0) !== KEY_BYTES) throw new ImageError(`${flag} ${path}: changed while it was read`);
    return key;
  } finally {
    closeSync(fd);
  }
}

// ---- compression ----

/** Pass `input` through a zlib transform. */
async function* throughZlib(input: AsyncIterable<Buffer>, t: NodeJS.ReadWriteStream & { destroy(e?: Error): void }, what: string): AsyncGenerator<Buffer> {
  const src = Readable.from(input, { objectMode: false });
  src.on('error', (e) => t.destroy(e));
  src.pipe(t);
  try {
    for await (const c of t as AsyncIterable<Buffer>) yield c;
  } catch (e) {
    if (e instanceof ImageError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && code.startsWith('Z_')) {
      if (code === 'Z_BUF_ERROR') throw new ImageError(`${what} is truncated: its gzip data ends early`);
      throw new ImageError(`${what} is damaged: its gzip data does not decompress (${(e as Error).message})`);
    }
    throw e;
  } finally {
    src.destroy();
  }
}

/** Pass `input` through the zstd program with `args`; its failure is one line. */
async function* throughZstd(input: AsyncIterable<Buffer>, args: string[], what: string): AsyncGenerator<Buffer> {
  const child = spawn('zstd', ['-q', '-c', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (e: NodeJS.ErrnoException) => reject(e.code === 'ENOENT'
      ? new ImageError('--compress zstd needs the zstd program, which is not installed: install it (Debian: apt-get install zstd) or use --compress gzip')
      : new ImageError(`cannot start zstd: ${e.message}`)));
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin.on('error', () => {}); // zstd ended early: its exit status says why
  const closed = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  let fed: unknown;
  const feeding = (async () => {
    try {
      for await (const c of input) {
        if (!child.stdin.write(c)) {
          await new Promise<void>((r) => {
            const done = (): void => {
              child.stdin.off('drain', done);
              child.stdin.off('close', done);
              r();
            };
            child.stdin.once('drain', done);
            child.stdin.once('close', done);
          });
        }
      }
      child.stdin.end();
    } catch (e) {
      fed = e;
      child.kill('SIGKILL');
    }
  })();
  try {
    for await (const c of child.stdout as AsyncIterable<Buffer>) yield c;
    await feeding;
    if (fed) throw fed;
    const code = await closed;
    if (code !== 0) {
      const line = stderr.trim().split('\n').at(-1)?.replace(/^(zstd: )?\/\*stdin\*\\? ?: ?/, '') || `exit status ${code}`;
      if (/premature end/i.test(line)) throw new ImageError(`${what} is truncated: its zstd data ends early`);
      throw new ImageError(`${what} is damaged: its zstd data does not decompress (${line})`);
    }
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

/** Compress with the fastest useful level: a stream is usually on its way somewhere. */
export function compress(input: AsyncIterable<Buffer>, how: Compression): AsyncIterable<Buffer> {
  if (how === 'gzip') return throughZlib(input, createGzip({ level: 1 }), 'compressing');
  if (how === 'zstd') return throughZstd(input, ['-1', '-T0'], 'compressing');
  return input;
}

export function decompress(input: AsyncIterable<Buffer>, how: Compression, what: string): AsyncIterable<Buffer> {
  if (how === 'gzip') return throughZlib(input, createGunzip(), what);
  if (how === 'zstd') return throughZstd(input, ['-d'], what);
  return input;
}

// ---- encryption ----

/** Plaintext per encrypted chunk, at most (a frame of the stream fits in one). */
export const CIPHER_CHUNK = 2 << 20;
const TAG = 16;
const SALT = 32;
const CHECK = 16;
const CIPHER_INFO = 'vjail-stream 1 aes-256-gcm';

/** What the preamble says of an encrypted stream: its salt and a check of the key. */
export interface CipherParams {
  salt: Buffer;
  check: Buffer;
}

function streamKey(key: Buffer, salt: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', key, salt, CIPHER_INFO, KEY_BYTES));
}

function keyCheck(k: Buffer): Buffer {
  return createHmac('sha256', k).update('vjail-stream key check').digest().subarray(0, CHECK);
}

/** Fresh parameters for a stream encrypted with `key` (a new salt: a key may encrypt any number of streams). */
export function newCipherParams(key: Buffer): CipherParams {
  const salt = randomBytes(SALT);
  return { salt, check: keyCheck(streamKey(key, salt)) };
}

export function formatCipherParams(p: CipherParams): string {
  return `${p.salt.toString('hex')} ${p.check.toString('hex')}`;
}

export function parseCipherParams(salt: string | undefined, check: string | undefined): CipherParams | undefined {
  if (!salt || !check || !/^[0-9a-f]{64}$/.test(salt) || !/^[0-9a-f]{32}$/.test(check)) return undefined;
  return { salt: Buffer.from(salt, 'hex'), check: Buffer.from(check, 'hex') };
}

function nonce(i: number): Buffer {
  const n = Buffer.alloc(12);
  n.writeBigUInt64BE(BigInt(i), 4);
  return n;
}

/**
 * Encrypt: each piece of the input as it comes (split at CIPHER_CHUNK) is one
 * chunk, [u32 length][u8 last] ciphertext tag, the header and the preamble
 * its additional data, its index the nonce. The last chunk (empty) says so.
 * The parts of a chunk are handed on as they are, not joined (no copies).
 * `consumed` is told of each input chunk once it is no longer needed.
 */
export async function* encrypt(input: AsyncIterable<Buffer>, key: Buffer, params: CipherParams, preamble: Buffer, consumed?: (chunk: Buffer) => void): AsyncGenerator<Buffer> {
  const k = streamKey(key, params.salt);
  let i = 0;
  function* seal(data: Buffer, last: boolean): Generator<Buffer> {
    const head = Buffer.alloc(5);
    head.writeUInt32BE(data.length, 0);
    head[4] = last ? 1 : 0;
    const c = createCipheriv('aes-256-gcm', k, nonce(i++));
    c.setAAD(Buffer.concat([preamble, head]));
    yield head;
    const body = c.update(data);
    if (body.length) yield body;
    const rest = c.final();
    if (rest.length) yield rest;
    yield c.getAuthTag();
  }
  for await (const chunk of input) {
    for (let off = 0; off < chunk.length; off += CIPHER_CHUNK) yield* seal(chunk.subarray(off, off + CIPHER_CHUNK), false);
    consumed?.(chunk); // encrypted: its buffer may be reused
  }
  yield* seal(Buffer.alloc(0), true);
}

/** Exact reads from a stream of Buffers, without copying where a chunk holds enough. */
export class ByteReader {
  private bufs: Buffer[] = [];
  private have = 0;
  private done = false;
  private readonly it: AsyncIterator<Buffer>;
  /** Bytes handed out so far. */
  consumed = 0;

  constructor(input: AsyncIterable<Buffer>) {
    this.it = input[Symbol.asyncIterator]();
  }

  private async fill(n: number): Promise<boolean> {
    while (this.have < n && !this.done) {
      const r = await this.it.next();
      if (r.done) this.done = true;
      else if (r.value.length) {
        const b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as Uint8Array);
        this.bufs.push(b);
        this.have += b.length;
      }
    }
    return this.have >= n;
  }

  private scratch = Buffer.alloc(0);

  /**
   * Exactly `n` bytes, or null if the input ends first. With `transient`,
   * bytes that span input chunks are joined in a buffer reused by the next
   * transient read (fresh memory is slow to fault in): the caller must be
   * done with them by then.
   */
  async read(n: number, transient = false): Promise<Buffer | null> {
    if (!(await this.fill(n))) return null;
    let out: Buffer;
    const first = this.bufs[0]!;
    if (n === 0) return Buffer.alloc(0);
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.bufs.shift();
      else this.bufs[0] = first.subarray(n);
    } else {
      if (transient && this.scratch.length < n) this.scratch = Buffer.allocUnsafe(Math.max(n, 4 << 20));
      out = transient ? this.scratch.subarray(0, n) : Buffer.allocUnsafe(n);
      let off = 0;
      while (off < n) {
        const b = this.bufs[0]!;
        const take = Math.min(b.length, n - off);
        b.copy(out, off, 0, take);
        off += take;
        if (take === b.length) this.bufs.shift();
        else this.bufs[0] = b.subarray(take);
      }
    }
    this.have -= n;
    this.consumed += n;
    return out;
  }

  /** A line of at most `max` bytes, without its newline; null if none ends within `max` bytes. */
  async line(max: number): Promise<Buffer | null> {
    for (let n = 1; n <= max; n++) {
      if (!(await this.fill(n))) return null;
      const joined = this.bufs.length === 1 ? this.bufs[0]! : Buffer.concat(this.bufs);
      const at = joined.indexOf(0x0a);
      if (at >= 0 && at < max) return (await this.read(at + 1))!.subarray(0, at);
      n = this.have;
    }
    return null;
  }

  /** Stop reading: the input's generators end (and a zstd filter is killed) without waiting for them. */
  close(): void {
    this.it.return?.(undefined)?.catch(() => {});
  }

  async atEnd(): Promise<boolean> {
    return !(await this.fill(1));
  }

  /** What is left, as it comes. */
  async *rest(): AsyncGenerator<Buffer> {
    const held = this.bufs;
    this.bufs = [];
    this.have = 0;
    yield* held;
    for (;;) {
      const r = await this.it.next();
      if (r.done) return;
      yield r.value;
    }
  }
}

/** Decrypt what `encrypt` made; anything else (edited, cut, reordered, another key) is refused in one line. */
export async function* decrypt(input: AsyncIterable<Buffer>, key: Buffer, params: CipherParams, preamble: Buffer, what: string): AsyncGenerator<Buffer> {
  const k = streamKey(key, params.salt);
  const check = keyCheck(k);
  if (!timingSafeEqual(check, params.check)) throw new ImageError(`${what} was encrypted with another key; give the key it was made with (--encrypt-key FILE)`);
  const r = new ByteReader(input);
  for (let i = 0; ; i++) {
    const head = await r.read(5);
    if (!head) throw new ImageError(`${what} is truncated: it ends before its last encrypted chunk`);
    const len = head.readUInt32BE(0);
    if (len > CIPHER_CHUNK || head[4]! > 1) throw new ImageError(`${what} is damaged: encrypted chunk ${i} has an invalid header`);
    const body = await r.read(len + TAG, true); // decrypted into a new buffer at once
    if (!body) throw new ImageError(`${what} is truncated: encrypted chunk ${i} is cut short`);
    const d = createDecipheriv('aes-256-gcm', k, nonce(i));
    d.setAAD(Buffer.concat([preamble, head]));
    d.setAuthTag(body.subarray(len));
    let plain: Buffer;
    try {
      plain = Buffer.concat([d.update(body.subarray(0, len)), d.final()]);
    } catch {
      throw new ImageError(`${what} is damaged: encrypted chunk ${i} does not authenticate (edited, reordered or corrupted)`);
    }
    if (plain.length) yield plain;
    if (head[4] === 1) {
      if (!(await r.atEnd())) throw new ImageError(`${what} is damaged: bytes follow its last encrypted chunk`);
      return;
    }
  }
}
