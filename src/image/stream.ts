/**
 * An image as one stream (docs/IMAGE.md, "Streams"): a clear preamble line
 * naming the compression and encryption, then frames, each with its own
 * sha256: start, and per file of the image its name and size, its bytes in
 * chunks, its end; then the end of the stream with the counts. Written from
 * an ImageSource, read into an ImageSink: the directory ones are here; a
 * source that sends pages as a pre-dump collects them, or a sink that hands
 * them to a lazy restore, plugs in the same way.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import {
  type Compression, COMPRESSIONS, ByteReader, compress, decompress, decrypt, encrypt, formatCipherParams, newCipherParams, parseCipherParams,
} from './codec.js';
import { ImageError } from './errors.js';
import { blobPackSize, chunkSumsSize, openImage, openImageFile } from './read.js';
import { BLOB_PACK_FILE, CHUNK_SUMS_FILE, HEADER_FILE, IMAGE_VERSION, type Manifest, MANIFEST_FILE } from './schema.js';
import { SIGNATURE_FILE } from './sign.js';

export const STREAM_MAGIC = 'vjail-stream';
export const STREAM_VERSION = 1;
/** Bytes of a file per data frame, at most. */
export const STREAM_CHUNK = 1 << 20;
const PREAMBLE_MAX = 256;
const FRAME_HEAD = 5;
const FRAME_HASH = 32;
/** The largest frame payload a reader accepts. */
const FRAME_MAX = STREAM_CHUNK;
/** A file of an image, at most (1 TiB). */
const FILE_MAX = 2 ** 40;
/** The names an image's files may have: nothing else is written by a reader. */
const FILE_NAME = /^(IMAGE|SIGNATURE|manifest\.json|blobs\.img|sums\.img|(pages|blob)-\d{1,9}\.img)$/;

const enum Frame {
  Start = 0x53, // 'S' {"format":"vjail-image","version":N}
  File = 0x46, // 'F' {"name":...,"size":N}
  Data = 0x44, // 'D' bytes of the current file
  End = 0x45, // 'E' the current file is complete
  Finish = 0x5a, // 'Z' {"files":N,"bytes":N}
  Patch = 0x50, // 'P' u8 length, a store's name, u32 count, count × (u64 offset, u32 length), their bytes: writes to a pre-dump's store (a migration's rounds)
  Recipe = 0x43, // 'C' {"name":...,"size":N,"store":...,"runs":[[page,count],...]}: a page file made of a store's pages
}

/** The names of a pre-dump's stores (a process's pid and a range of it) that a stream may patch. */
const STORE_NAME = /^\d{1,10}-x?\d{1,6}$/;
/** A store's name in a patch frame, at most; each of its pieces' offset and length. */
const STORE_NAME_MAX = 32;
const PATCH_PIECE = 12;

/**
 * Bytes of a pre-dump's store (predump.ts) to write at `offset` of the
 * receiver's copy of it: sent while the jail still runs, so that the image's
 * page files can be made there from the stores (`StoreRecipe`).
 */
export interface StorePatch {
  kind: 'patch';
  store: string;
  /** [offset, length] of each piece, sorted and apart. */
  extents: [number, number][];
  /** Read pieces of the store into `buf`: [where in buf, length, offset in the store] each (one frame's, at once). */
  read(buf: Buffer, pieces: [number, number, number][]): void;
}

/** A page file of the image that is the concatenation of these runs of a store's pages (page index in the store, count). */
export interface StoreRecipe {
  kind: 'recipe';
  name: string;
  size: number;
  store: string;
  runs: [number, number][];
}

/** One file of an image to send: its name, size and bytes in order. */
export interface SourceFile {
  name: string;
  size: number;
  chunks(): AsyncIterable<Buffer>;
  /** Optional, for speed: read the file in order straight into the caller's buffers (each read exact). */
  open?(): { read(buf: Buffer, off: number, len: number): void; close(): void };
}

/** What a stream is written from: the files of an image, page files first, IMAGE last. */
export interface ImageSource {
  files(): AsyncIterable<SourceFile | StorePatch | StoreRecipe>;
}

/**
 * Where a stream is read into. Each call may return a promise; the reader
 * waits for it. A chunk given to `data` is valid only until then (its
 * buffer is reused): a sink that keeps it copies it.
 */
export interface ImageSink {
  begin(name: string, size: number): void | Promise<void>;
  data(chunk: Buffer): void | Promise<void>;
  end(): void | Promise<void>;
  /*
   * Patches and recipes come only in a migration's streamed pre-dump: a sink
   * without these methods refuses a stream that has them.
   */
  /** A frame's pieces of a store, each to write at its offset (views of the frame: copy what is kept). */
  patch?(store: string, pieces: { offset: number; data: Buffer }[]): void | Promise<void>;
  /** A page file to make of a store's pages. */
  recipe?(r: StoreRecipe): void | Promise<void>;
}

export interface StreamOptions {
  compress?: Compression;
  /** AES-256 key (32 bytes): encrypt, or (reading) the key the stream must be encrypted with. */
  key?: Buffer;
}

export interface StreamTotals {
  files: number;
  /** Bytes of the image's files. */
  bytes: number;
  /** Bytes of the stream as written or read. */
  streamBytes: number;
  compress: Compression;
  encrypted: boolean;
}

/**
 * The files of an image directory, as a stream source: page files and blobs,
 * then manifest.json, SIGNATURE where there is one, then IMAGE. `manifest`:
 * the one just written there (the image is not read again for its files).
 */
export function dirSource(dir: string, manifest?: Manifest): ImageSource {
  const m = manifest ?? openImage(dir, { verifyPages: false }).manifest;
  const names = new Map<string, number>();
  for (const p of m.processes) {
    if (p.state !== 'live') continue;
    for (const map of p.mappings) if (map.pages) names.set(map.pages.file, map.pages.size);
  }
  for (const o of m.sharedMemory) if (o.pages) names.set(o.pages.file, o.pages.size);
  // Version 8: every page file's chunk digests.
  const sums = chunkSumsSize(m);
  if (sums !== null) names.set(CHUNK_SUMS_FILE, sums);
  for (const b of m.blobs) if (b.offset === undefined) names.set(b.file, b.size);
  if (m.blobs.some((b) => b.offset !== undefined)) names.set(BLOB_PACK_FILE, blobPackSize(m));
  const file = (name: string, size?: number): SourceFile => ({
    name,
    size: size ?? openFileSize(dir, name),
    chunks: () => fileChunks(dir, name, size),
    open: () => openReader(dir, name, size),
  });
  return {
    async *files() {
      for (const [name, size] of names) yield file(name, size);
      yield file(MANIFEST_FILE);
      if (existsSync(join(dir, SIGNATURE_FILE))) yield file(SIGNATURE_FILE);
      yield file(HEADER_FILE);
    },
  };
}

function openFileSize(dir: string, name: string): number {
  const { fd, size } = openImageFile(dir, name, { max: FILE_MAX });
  closeSync(fd);
  return size;
}

function openReader(dir: string, name: string, size: number | undefined): { read(buf: Buffer, off: number, len: number): void; close(): void } {
  const opened = openImageFile(dir, name, size === undefined ? { max: FILE_MAX } : { exact: size, said: 'the manifest says' });
  let pos = 0;
  return {
    read(buf, off, len) {
      for (let got = 0; got < len; ) {
        const n = readSync(opened.fd, buf, off + got, len - got, pos);
        if (n === 0) throw new ImageError(`${dir} is damaged: ${name} changed while it was read`);
        got += n;
        pos += n;
      }
    },
    close: () => closeSync(opened.fd),
  };
}

async function* fileChunks(dir: string, name: string, size: number | undefined): AsyncGenerator<Buffer> {
  const opened = openImageFile(dir, name, size === undefined ? { max: FILE_MAX } : { exact: size, said: 'the manifest says' });
  try {
    for (let off = 0; off < opened.size; ) {
      const want = Math.min(STREAM_CHUNK, opened.size - off);
      const buf = Buffer.allocUnsafe(want);
      let got = 0;
      while (got < want) {
        const n = readSync(opened.fd, buf, got, want - got, off + got);
        if (n === 0) throw new ImageError(`${dir} is damaged: ${name} changed while it was read`);
        got += n;
      }
      off += want;
      yield buf;
    }
  } finally {
    closeSync(opened.fd);
  }
}

const FRAME_BYTES = FRAME_HEAD + STREAM_CHUNK + FRAME_HASH;

/**
 * Buffers for data frames. Fresh memory is slow to fault in on some hosts
 * (about 1 ms per MiB here, more than hashing it): where the caller says
 * when the output is done with a frame (`release`), a few buffers are
 * reused in turn; otherwise each frame gets a new one.
 */
class FramePool {
  private readonly free: Buffer[] = [];
  private readonly mine = new Set<ArrayBufferLike>();
  private waiting: (() => void) | undefined;

  constructor(private readonly reuse: number) {}

  async take(): Promise<Buffer> {
    if (this.reuse === 0) return Buffer.allocUnsafe(FRAME_BYTES);
    if (this.mine.size < this.reuse) {
      const b = Buffer.allocUnsafe(FRAME_BYTES);
      this.mine.add(b.buffer);
      return b;
    }
    while (this.free.length === 0) await new Promise<void>((resolve) => (this.waiting = resolve));
    return this.free.pop()!;
  }

  /** The output is done with `chunk` (a frame from `take`, or anything else, ignored). */
  release(chunk: Buffer): void {
    if (!this.mine.has(chunk.buffer)) return;
    this.free.push(Buffer.from(chunk.buffer, 0, FRAME_BYTES));
    const w = this.waiting;
    this.waiting = undefined;
    w?.();
  }
}

/** Fill in a frame's header and hash around the `len` payload bytes at FRAME_HEAD. */
function seal(out: Buffer, type: Frame, len: number): Buffer {
  out[0] = type;
  out.writeUInt32BE(len, 1);
  createHash('sha256').update(out.subarray(0, FRAME_HEAD + len)).digest().copy(out, FRAME_HEAD + len);
  return out.subarray(0, FRAME_HEAD + len + FRAME_HASH);
}

function frame(type: Frame, payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEAD + payload.length + FRAME_HASH);
  payload.copy(out, FRAME_HEAD);
  return seal(out, type, payload.length);
}

const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));

async function* frames(source: ImageSource, totals: { files: number; bytes: number }, pool: FramePool): AsyncGenerator<Buffer> {
  yield frame(Frame.Start, json({ format: 'vjail-image', version: IMAGE_VERSION }));
  for await (const f of source.files()) {
    if ('kind' in f && f.kind === 'patch') {
      yield* patchFrames(f, pool);
      continue;
    }
    if ('kind' in f && f.kind === 'recipe') {
      yield frame(Frame.Recipe, json({ name: f.name, size: f.size, store: f.store, runs: f.runs }));
      totals.files++;
      totals.bytes += f.size;
      continue;
    }
    yield frame(Frame.File, json({ name: f.name, size: f.size }));
    let sent = 0;
    if (f.open) {
      const r = f.open();
      try {
        while (sent < f.size) {
          const len = Math.min(STREAM_CHUNK, f.size - sent);
          const buf = await pool.take();
          r.read(buf, FRAME_HEAD, len);
          sent += len;
          yield seal(buf, Frame.Data, len);
        }
      } finally {
        r.close();
      }
    } else {
      for await (const c of f.chunks()) {
        for (let off = 0; off < c.length; off += STREAM_CHUNK) {
          const piece = c.subarray(off, off + STREAM_CHUNK);
          sent += piece.length;
          yield frame(Frame.Data, piece);
        }
      }
    }
    if (sent !== f.size) throw new ImageError(`the image's ${f.name} is ${sent} bytes, not the ${f.size} it said`);
    yield frame(Frame.End, Buffer.alloc(0));
    totals.files++;
    totals.bytes += sent;
  }
  yield frame(Frame.Finish, json({ files: totals.files, bytes: totals.bytes }));
}

/**
 * A store patch as frames: as many pieces as fit in one (a page written
 * here and there is one piece each: a frame apiece would cost more than
 * its bytes), a piece too long for the room left cut in two.
 */
async function* patchFrames(p: StorePatch, pool: FramePool): AsyncGenerator<Buffer> {
  const name = Buffer.from(p.store, 'latin1');
  const fixed = 1 + name.length + 4;
  const pieces = p.extents.map(([o, l]): [number, number] => [o, l]);
  let next = 0;
  while (next < pieces.length) {
    // Pick the pieces of this frame: each takes PATCH_PIECE bytes of header and its bytes.
    const frame: [number, number][] = [];
    let room = STREAM_CHUNK - fixed;
    while (next < pieces.length && room > PATCH_PIECE) {
      const [o, l] = pieces[next]!;
      const take = Math.min(l, room - PATCH_PIECE);
      frame.push([o, take]);
      room -= PATCH_PIECE + take;
      if (take === l) next++;
      else pieces[next] = [o + take, l - take];
    }
    const buf = await pool.take();
    let at = FRAME_HEAD;
    buf[at++] = name.length;
    at += name.copy(buf, at);
    buf.writeUInt32BE(frame.length, at);
    at += 4;
    for (const [o, l] of frame) {
      buf.writeBigUInt64BE(BigInt(o), at);
      buf.writeUInt32BE(l, at + 8);
      at += PATCH_PIECE;
    }
    const into: [number, number, number][] = [];
    for (const [o, l] of frame) {
      into.push([at, l, o]);
      at += l;
    }
    p.read(buf, into);
    yield seal(buf, Frame.Patch, at - FRAME_HEAD);
  }
}

function preambleOf(how: Compression, cipher: string | undefined): Buffer {
  return Buffer.from(`${STREAM_MAGIC} ${STREAM_VERSION} ${how} ${cipher ? `aes-256-gcm ${cipher}` : 'none'}\n`);
}

/** Wait until `out` has taken `chunk` (backpressure), or fail with its error. */
async function put(out: Writable, chunk: Buffer): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const done = (e?: Error | null): void => (e ? reject(e) : resolve());
    if (out.destroyed) return reject(new Error('the output was closed'));
    out.write(chunk, done);
  });
}

/**
 * Write the image `source` to `out` as one stream. Resolves once `out` has
 * taken all of it (it is not ended: stdout is not ours to close).
 */
export async function writeImageStream(source: ImageSource, out: Writable, opts: StreamOptions = {}): Promise<StreamTotals> {
  const how = opts.compress ?? 'none';
  const params = opts.key ? newCipherParams(opts.key) : undefined;
  const preamble = preambleOf(how, params && formatCipherParams(params));
  const totals = { files: 0, bytes: 0 };
  // A frame's buffer is reused once done with: written (`out`'s write callback) or encrypted.
  // Compression (zlib, the zstd program) does not say when it is done with its input: fresh ones.
  const pool = new FramePool(how === 'none' ? 16 : 0);
  let bytes: AsyncIterable<Buffer> = compress(frames(source, totals, pool), how);
  if (opts.key) bytes = encrypt(bytes, opts.key, params!, preamble, (c) => pool.release(c));
  let streamBytes = preamble.length;
  // Many small writes in flight: wait for each only when the stream asks to.
  await put(out, preamble);
  for await (const c of bytes) {
    streamBytes += c.length;
    if (!out.write(c, () => pool.release(c))) await new Promise<void>((resolve, reject) => {
      const ok = (): void => { out.off('error', bad); resolve(); };
      const bad = (e: Error): void => { out.off('drain', ok); reject(e); };
      out.once('drain', ok);
      out.once('error', bad);
    });
  }
  await put(out, Buffer.alloc(0));
  return { ...totals, streamBytes, compress: how, encrypted: !!opts.key };
}

/** The preamble: what the stream is, how it is compressed and encrypted. */
async function readPreamble(r: ByteReader, what: string): Promise<{ how: Compression; cipher?: { salt: Buffer; check: Buffer }; raw: Buffer }> {
  const line = await r.line(PREAMBLE_MAX);
  if (!line) {
    if (r.consumed === 0 && (await r.atEnd())) throw new ImageError(`${what} is empty; expected a vjail image stream (vjail checkpoint NAME --image -)`);
    throw new ImageError(`${what} is not a vjail image stream (no ${STREAM_MAGIC} preamble)`);
  }
  const words = line.toString('latin1').split(' ');
  if (words[0] !== STREAM_MAGIC) throw new ImageError(`${what} is not a vjail image stream (no ${STREAM_MAGIC} preamble)`);
  if (words[1] !== String(STREAM_VERSION)) throw new ImageError(`${what} is a version ${words[1]} image stream; this vjail reads version ${STREAM_VERSION}`);
  const how = words[2] as Compression;
  if (!(COMPRESSIONS as readonly string[]).includes(how)) throw new ImageError(`${what} is compressed with "${words[2]}", which this vjail does not know (it knows ${COMPRESSIONS.join(', ')})`);
  const raw = Buffer.concat([line, Buffer.from('\n')]);
  if (words[3] === 'none' && words.length === 4) return { how, raw };
  if (words[3] !== 'aes-256-gcm' || words.length !== 6) throw new ImageError(`${what} has an invalid preamble (encryption "${words[3]}")`);
  const cipher = parseCipherParams(words[4], words[5]);
  if (!cipher) throw new ImageError(`${what} has an invalid preamble (encryption parameters)`);
  return { how, cipher, raw };
}

/**
 * Read a stream into `sink`, checking every frame's sha256, every file's
 * size, the order of the frames and the final counts. Throws ImageError
 * with one line; the sink has then received part of an image only.
 */
export async function readImageStream(input: AsyncIterable<Buffer>, sink: ImageSink, opts: { key?: Buffer; what: string }): Promise<StreamTotals> {
  const what = opts.what;
  const raw = new ByteReader(input);
  const pre = await readPreamble(raw, what);
  if (pre.cipher && !opts.key) throw new ImageError(`${what} is encrypted; give its key with --encrypt-key FILE`);
  if (!pre.cipher && opts.key) throw new ImageError(`${what} is not encrypted, but a key was given; it cannot be authenticated with it (leave out --encrypt-key to read it)`);
  let bytes: AsyncIterable<Buffer> = raw.rest();
  let streamBytes = pre.raw.length;
  bytes = (async function* counted(src) {
    for await (const c of src) {
      streamBytes += c.length;
      yield c;
    }
  })(bytes);
  if (pre.cipher) bytes = decrypt(bytes, opts.key!, pre.cipher, pre.raw, what);
  const r = new ByteReader(decompress(bytes, pre.how, what));
  try {
    return await readFrames(r, sink, what, pre, () => streamBytes);
  } finally {
    r.close();
    raw.close();
  }
}

async function readFrames(r: ByteReader, sink: ImageSink, what: string, pre: { how: Compression; cipher?: unknown }, streamBytes: () => number): Promise<StreamTotals> {
  const damaged = (why: string): ImageError => new ImageError(`${what} is damaged: ${why}`);
  const truncated = (): ImageError => new ImageError(`${what} is truncated: it ends before its end frame`);
  const next = async (n: number): Promise<{ type: number; payload: Buffer }> => {
    const head = await r.read(FRAME_HEAD);
    if (!head) throw truncated();
    const len = head.readUInt32BE(1);
    if (len > FRAME_MAX) throw damaged(`frame ${n} claims ${len} bytes, more than a frame may hold`);
    const rest = await r.read(len + FRAME_HASH, true); // used up before the next frame is read
    if (!rest) throw truncated();
    const sum = createHash('sha256').update(head).update(rest.subarray(0, len)).digest();
    if (!sum.equals(rest.subarray(len))) throw damaged(`frame ${n} does not match its checksum`);
    return { type: head[0]!, payload: rest.subarray(0, len) };
  };
  const parse = <T>(payload: Buffer, n: number): T => {
    try {
      return JSON.parse(payload.toString('utf8')) as T;
    } catch {
      throw damaged(`frame ${n} is not valid JSON`);
    }
  };
  let n = 0;
  const start = await next(n++);
  if (start.type !== Frame.Start) throw damaged('it does not begin with a start frame');
  const s = parse<{ format?: unknown; version?: unknown }>(start.payload, 0);
  if (s.format !== 'vjail-image') throw damaged('its start frame names no vjail image');
  const names = new Set<string>();
  let files = 0;
  let total = 0;
  for (;;) {
    const f = await next(n);
    if (f.type === Frame.Finish) {
      const z = parse<{ files?: unknown; bytes?: unknown }>(f.payload, n);
      if (z.files !== files || z.bytes !== total) throw damaged(`its end frame says ${String(z.files)} files and ${String(z.bytes)} bytes, but it held ${files} and ${total}`);
      break;
    }
    if (f.type === Frame.Patch) {
      const bad = (): ImageError => damaged(`frame ${n} is not a valid patch of a pre-dump's store`);
      const pl = f.payload;
      const len = pl[0] ?? 0;
      const store = pl.subarray(1, 1 + len).toString('latin1');
      if (len > STORE_NAME_MAX || pl.length < 1 + len + 4 || !STORE_NAME.test(store)) throw bad();
      const count = pl.readUInt32BE(1 + len);
      let at = 1 + len + 4;
      let data = at + count * PATCH_PIECE;
      if (data > pl.length) throw bad();
      if (files) throw damaged(`frame ${n} patches a store after the image's files began`);
      if (!sink.patch) throw damaged(`frame ${n} is a pre-dump's patch, which only a page server takes`);
      // Every piece checked before any is written: a malformed frame writes nothing.
      const pieces: { offset: number; data: Buffer }[] = [];
      for (let i = 0; i < count; i++, at += PATCH_PIECE) {
        const offset = Number(pl.readBigUInt64BE(at));
        const l = pl.readUInt32BE(at + 8);
        if (data + l > pl.length || offset + l > FILE_MAX) throw bad();
        pieces.push({ offset, data: pl.subarray(data, data + l) });
        data += l;
      }
      if (data !== pl.length) throw bad();
      await sink.patch(store, pieces);
      n++;
      continue;
    }
    if (f.type === Frame.Recipe) {
      const c = parse<{ name?: unknown; size?: unknown; store?: unknown; runs?: unknown }>(f.payload, n);
      const runs = c.runs;
      const okRuns = Array.isArray(runs) && runs.every((x) => Array.isArray(x) && x.length === 2 && x.every((v) => Number.isSafeInteger(v) && (v as number) >= 0));
      if (typeof c.name !== 'string' || !/^pages-\d{1,9}\.img$/.test(c.name) || typeof c.store !== 'string' || !STORE_NAME.test(c.store) || !okRuns
        || typeof c.size !== 'number' || !Number.isSafeInteger(c.size) || c.size < 0 || c.size > FILE_MAX) throw damaged(`frame ${n} is an invalid page file recipe`);
      if (names.has(c.name)) throw damaged(`${c.name} appears twice`);
      if (!sink.recipe) throw damaged(`frame ${n} is a page file made of a pre-dump's pages, which only a page server takes`);
      names.add(c.name);
      n++;
      await sink.recipe({ kind: 'recipe', name: c.name, size: c.size, store: c.store, runs: runs as [number, number][] });
      files++;
      total += c.size;
      continue;
    }
    if (f.type !== Frame.File) throw damaged(`frame ${n} is out of order (expected a file or the end)`);
    const meta = parse<{ name?: unknown; size?: unknown }>(f.payload, n++);
    const name = meta.name;
    const size = meta.size;
    if (typeof name !== 'string' || !FILE_NAME.test(name)) throw damaged(`frame ${n - 1} names a file "${String(name)}" that images do not have`);
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0 || size > FILE_MAX) throw damaged(`${name} has an invalid size`);
    if (names.has(name)) throw damaged(`${name} appears twice`);
    names.add(name);
    await sink.begin(name, size);
    let got = 0;
    for (;;) {
      const d = await next(n++);
      if (d.type === Frame.End) break;
      if (d.type !== Frame.Data) throw damaged(`frame ${n - 1} is out of order (within ${name})`);
      got += d.payload.length;
      if (got > size) throw damaged(`${name} holds more than its ${size} bytes`);
      await sink.data(d.payload);
    }
    if (got !== size) throw damaged(`${name} holds ${got} bytes, not its ${size}`);
    await sink.end();
    files++;
    total += size;
  }
  if (!(await r.atEnd())) throw damaged('bytes follow its end frame');
  return { files, bytes: total, streamBytes: streamBytes(), compress: pre.how, encrypted: !!pre.cipher };
}

/** Writes the files of a stream into a directory (not synced: it is read back at once, or synced by its caller). */
export class DirSink implements ImageSink {
  private fd = -1;

  constructor(readonly dir: string) {
    mkdirSync(dir, { mode: 0o700 });
  }

  begin(name: string): void {
    this.fd = openSync(join(this.dir, name), 'wx', 0o600);
  }

  data(chunk: Buffer): void {
    for (let off = 0; off < chunk.length; ) off += writeSync(this.fd, chunk, off, chunk.length - off);
  }

  end(): void {
    closeSync(this.fd);
    this.fd = -1;
  }

  /** fsync every file written, then the directory. */
  sync(names: string[]): void {
    for (const n of [...names, '.']) {
      const fd = openSync(join(this.dir, n), 'r');
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
  }

  /** The stream was read whole (before the image is checked). */
  finish(): void {}

  /** Close what is open and remove the directory. */
  abort(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Receive a stream into the new directory `dir` and check it as restore
 * would (all but the page files' contents, which restore hashes as it loads
 * them, and which every frame's sha256 has covered already). On any failure
 * `dir` is removed and an ImageError says why in one line. `check: false`
 * leaves out the check as restore would (not the frames' and files'): for a
 * caller whose restore does it first, before anything of the image runs.
 */
export async function receiveImage(input: AsyncIterable<Buffer>, dir: string, opts: { key?: Buffer; what: string; sink?: (dir: string) => DirSink; check?: boolean }): Promise<StreamTotals> {
  const sink = opts.sink?.(dir) ?? new DirSink(dir);
  try {
    const totals = await readImageStream(input, sink, opts);
    sink.finish();
    try {
      if (opts.check ?? true) openImage(dir, { verifyPages: false });
    } catch (e) {
      if (e instanceof ImageError) throw new ImageError(`${opts.what}: ${e.message.replaceAll(dir, 'the image')}`);
      throw e;
    }
    return totals;
  } catch (e) {
    sink.abort();
    const code = (e as NodeJS.ErrnoException).code;
    if (!(e instanceof ImageError) && typeof code === 'string' && /^E[A-Z]+$/.test(code)) {
      throw new ImageError(`cannot receive ${opts.what} into ${dir}: ${code}${code === 'ENOSPC' || code === 'EDQUOT' ? '; set TMPDIR to a file system with room for the image' : ''}`);
    }
    throw e;
  }
}
