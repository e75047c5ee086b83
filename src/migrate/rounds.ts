/**
 * A migration with its pre-dump streamed (protocol 2): the sender sends the
 * pre-dump's copies of the jail's memory (its stores, predump.ts) as they
 * are made, while the jail runs; once it is stopped, only what was copied
 * since, the image's files, and for each page file made of a store's pages
 * the runs it is made of. The receiver keeps a copy of every store and
 * makes those page files from them, so that the memory crosses the
 * connection while the jail runs, not while it is stopped.
 */
import { closeSync, fstatSync, linkSync, mkdirSync, openSync, readSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { StoreMirror } from '../checkpoint/predump.js';
import { StoreDigests } from './store-digests.js';
import { pageCopyAddon } from '../native/pagecopy.js';
import type { Compression } from '../image/codec.js';
import { type Manifest, PAGE_CHUNK_BYTES, PAGE_SIZE } from '../image/format.js';
import { ImageError } from '../image/errors.js';
import { DirSink, dirSource, type ImageSource, type SourceFile, type StorePatch, type StoreRecipe, type StreamTotals, writeImageStream } from '../image/stream.js';
import type { RestoreReply } from './protocol.js';
import { awaitReply, type PageServerConnection, sendFailure } from './transfer.js';

type Item = SourceFile | StorePatch | StoreRecipe;

/**
 * The chunk a store's digests are kept by: small, so that a page written
 * at random costs little hashing again (a round's, and the last one's while
 * stopped), yet at most MAX_CHUNKS of them: each is 32 bytes of the page
 * file's .sums, read and checked while the jail is stopped (at 65536 of
 * 16 KiB, as lines of the manifest then, 1 GiB took most of a second to
 * commit under load).
 */
const MIN_CHUNK = 64 << 10;
const MAX_CHUNKS = 1 << 14;
/** A round that sent at most this much has the stores' digests brought up to date (a page each rehashes its chunk). */
const REHASH_BELOW = 16 << 20;
function chunkFor(storeMax: number): number {
  let c = MIN_CHUNK;
  while (c < PAGE_CHUNK_BYTES && storeMax / c > MAX_CHUNKS) c *= 2;
  return c;
}

const patchBytes = (ps: StorePatch[]): number => ps.reduce((n, p) => n + p.extents.reduce((m, [, l]) => m + l, 0), 0);

/** Coalesce [offset, len] extents (any order, overlapping) into sorted disjoint ones. */
function coalesce(extents: [number, number][]): [number, number][] {
  extents.sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const [off, len] of extents) {
    const last = out.at(-1);
    if (last && off <= last[0] + last[1]) last[1] = Math.max(last[1], off + len - last[0]);
    else out.push([off, len]);
  }
  return out;
}

/**
 * The sender's side: a StoreMirror for the pre-dump (checkpoint's step 1)
 * that writes one encrypted stream to the page server from the first round
 * to the image's last file.
 */
export class RoundsSender implements StoreMirror {
  /** Per store: its file, what was written since the last round, and its chunks' digests. */
  private readonly written = new Map<string, { fd: number; extents: [number, number][]; digests: StoreDigests }>();
  private readonly recipes = new Map<string, StoreRecipe>();
  private batch: { items: Item[]; taken: () => void } | 'end' | undefined;
  private wake: (() => void) | undefined;
  private readonly writing: Promise<StreamTotals>;
  private readonly answer: Promise<RestoreReply>;
  /** Bytes of patches sent while the jail ran, and once it was stopped. */
  runningBytes = 0;
  stoppedBytes = 0;

  constructor(private readonly conn: PageServerConnection, compress?: Compression) {
    this.answer = awaitReply(conn);
    this.answer.catch(() => {}); // awaited when it matters
    const source: ImageSource = { files: () => this.items() };
    this.writing = writeImageStream(source, conn.sock, { key: conn.psk, compress });
    this.writing.catch(() => {}); // awaited in `send`
  }

  private async *items(): AsyncGenerator<Item> {
    for (;;) {
      while (this.batch === undefined) await new Promise<void>((resolve) => (this.wake = resolve));
      const b = this.batch;
      if (b === 'end') return;
      for (const item of b.items) yield item;
      this.batch = undefined;
      b.taken();
    }
  }

  /** Hand `items` to the stream; resolves once all are framed and written (or fails as the connection does). */
  private async send(items: Item[] | 'end'): Promise<void> {
    const taken = new Promise<void>((resolve) => {
      this.batch = items === 'end' ? 'end' : { items, taken: resolve };
      if (items === 'end') resolve();
    });
    const w = this.wake;
    this.wake = undefined;
    w?.();
    const early = this.answer.then((r) => {
      throw new ImageError(r.ok ? `the page server at ${this.conn.peer} answered before the image was sent` : `the page server at ${this.conn.peer} could not restore the jail (${r.error})`);
    });
    early.catch(() => {});
    try {
      await Promise.race([taken, early, this.writing.then(() => {
        if (items !== 'end') throw new ImageError('internal: the migration stream ended before its last round');
      })]);
    } catch (e) {
      throw await sendFailure(this.conn, this.answer, e);
    }
  }

  copied(name: string, fd: number, offset: number, len: number, storeMax: number): void {
    let w = this.written.get(name);
    if (!w) this.written.set(name, (w = { fd, extents: [], digests: new StoreDigests(chunkFor(storeMax)) }));
    w.fd = fd;
    w.extents.push([offset, len]);
    w.digests.written(offset, len);
  }

  /** Bring the digests of store `name`'s first `size` bytes up to date: what was written since is hashed again. */
  chunkDigests(name: string, size: number): { chunk: number; sums: Buffer } | null {
    const w = this.written.get(name);
    if (!w) return null;
    const sums = w.digests.upToDate(w.fd, size);
    // Shorter than said: the page file is written as usual.
    return sums === null ? null : { chunk: w.digests.chunk, sums };
  }

  /** What was copied since the last call, as patches read from the stores when sent. */
  private patches(): StorePatch[] {
    const out: StorePatch[] = [];
    for (const [store, w] of this.written) {
      if (!w.extents.length) continue;
      out.push({
        kind: 'patch', store, extents: coalesce(w.extents),
        read: (buf, pieces) => {
          const spans = Float64Array.from(pieces.flat());
          if (pageCopyAddon().preadAll(w.fd, buf, spans) < pieces.length) throw new Error(`internal: the pre-dump's store ${store} ended early`);
        },
      });
      w.extents = [];
    }
    return out;
  }

  async round(): Promise<void> {
    const items = this.patches();
    const bytes = patchBytes(items);
    this.runningBytes += bytes;
    try {
      await this.send(items);
      // Hashed while the jail runs, once a round finds little written (before, most would be written
      // again): once it is stopped, only the chunks written since are hashed again.
      if (bytes <= REHASH_BELOW) for (const [name, w] of this.written) this.chunkDigests(name, fstatSync(w.fd).size);
    } catch (e) {
      // The jail was not stopped yet: the pre-dump ends, and it runs on as it was.
      if (e instanceof ImageError) throw new ImageError(`migrate: ${e.message}; the jail runs on here`);
      throw e;
    }
  }

  pageFile(file: string, size: number, store: string, runs: [number, number][]): void {
    this.recipes.set(file, { kind: 'recipe', name: file, size, store, runs });
  }

  /**
   * Once the image is published (the jail held): what was copied since the
   * last round, then the image's files (recipes for those made of a store),
   * then wait for the receiver's answer.
   */
  async finish(dir: string, manifest?: Manifest): Promise<{ totals: StreamTotals; sentAt: number; reply: RestoreReply }> {
    const last = this.patches();
    this.stoppedBytes = patchBytes(last);
    const files: Item[] = [...last];
    for await (const f of dirSource(dir, manifest).files()) {
      const r = 'kind' in f ? undefined : this.recipes.get(f.name);
      if (r && 'size' in f && r.size !== f.size) throw new Error(`internal: ${r.name} is ${f.size} bytes, its recipe ${r.size}`);
      files.push(r ?? f);
    }
    await this.send(files);
    await this.send('end');
    let totals: StreamTotals;
    try {
      totals = await this.writing;
    } catch (e) {
      throw await sendFailure(this.conn, this.answer, e);
    }
    this.conn.sock.end();
    const sentAt = performance.now();
    this.conn.sock.setTimeout(0); // the receiver is restoring; the wait for its answer is bounded
    return { totals, sentAt, reply: await this.answer };
  }
}

/** The receiver's side: the image's files into a directory, and the stores beside it, of which page files are made. */
export class StoreSink extends DirSink {
  private readonly storesDir: string;
  private readonly stores = new Map<string, number>();
  /** When the first of the image's files came: from then on the sender's jail is stopped. */
  filesAt: number | undefined;

  constructor(dir: string) {
    super(dir);
    this.storesDir = `${dir}.stores`;
    mkdirSync(this.storesDir, { mode: 0o700 });
  }

  patch(store: string, pieces: { offset: number; data: Buffer }[]): void {
    let fd = this.stores.get(store);
    if (fd === undefined) this.stores.set(store, (fd = openSync(join(this.storesDir, store), 'w+', 0o600)));
    // One native call a frame: a round's pages are mostly single pages, each a pwrite.
    pageCopyAddon().pwriteAll(fd, pieces.map((p) => p.data), Float64Array.from(pieces, (p) => p.offset));
  }

  override begin(name: string): void {
    this.filesAt ??= performance.now();
    super.begin(name);
  }

  recipe(r: StoreRecipe): void {
    this.filesAt ??= performance.now();
    const fd = this.stores.get(r.store);
    const damaged = (why: string): ImageError => new ImageError(`the migration stream is damaged: ${r.name} ${why}`);
    if (fd === undefined) throw damaged(`is made of a store "${r.store}" it never sent`);
    if (r.runs.reduce((n, [, count]) => n + count * PAGE_SIZE, 0) !== r.size) throw damaged(`is ${r.size} bytes, not the pages of its runs`);
    const storeSize = fstatSync(fd).size;
    const [first] = r.runs;
    if (r.runs.length === 1 && first![0] === 0 && storeSize === r.size) {
      // The page file is the store as it is: the same file under the image's name.
      linkSync(join(this.storesDir, r.store), join(this.dir, r.name));
      return;
    }
    this.begin(r.name);
    const buf = Buffer.allocUnsafe(1 << 20);
    for (const [page, count] of r.runs) {
      for (let at = page * PAGE_SIZE, end = (page + count) * PAGE_SIZE; at < end; ) {
        const n = readSync(fd, buf, 0, Math.min(buf.length, end - at), at);
        if (n === 0) throw damaged(`needs pages its store "${r.store}" does not hold`);
        this.data(buf.subarray(0, n));
        at += n;
      }
    }
    this.end();
  }

  /**
   * The stores are closed; their directory goes with the image's temporary
   * one (removeTempImage), once the jail runs: not now, while the sender's
   * jail is stopped (unlinking a GiB-sized store took some 3 ms).
   */
  override finish(): void {
    for (const fd of this.stores.values()) closeSync(fd);
    this.stores.clear();
  }

  override abort(): void {
    this.finish();
    rmSync(this.storesDir, { recursive: true, force: true });
    super.abort();
  }
}
