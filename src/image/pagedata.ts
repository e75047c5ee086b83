/**
 * Page data on its way to and from disk: a small ring of reused buffers and
 * sha256 computed on a worker thread, so that hashing overlaps with copying.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { dataPath } from '../paths.js';

/**
 * sha256 on a worker thread, so that hashing page data overlaps with reading
 * and writing it on this one. Updates are queued in order; `digest` waits
 * (Atomics.wait) until the worker has hashed everything queued before it.
 */
const HASHER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
Atomics.store(workerData.started, 0, 1);
// Whole chunks go to the addon, which hashes two at a time with the CPU's SHA instructions (native/chunkhash.c).
let sha256Chunks = null;
try {
  sha256Chunks = require(workerData.addon).sha256Chunks ?? null;
} catch {}
const hashes = new Map();
parentPort.on('message', (m) => {
  if (m.readFile) {
    // A whole file read here, in one go (readFileOffThread).
    try {
      parentPort.postMessage({ readId: m.readId, text: require('node:fs').readFileSync(m.readFile, 'utf8') });
    } catch (e) {
      parentPort.postMessage({ readId: m.readId, error: e.message, code: e.code });
    }
    return;
  }
  let h = hashes.get(m.id);
  if (!h) hashes.set(m.id, (h = { whole: m.tree ? null : createHash('sha256'), chunk: m.chunk, part: null, fill: 0, sums: [] }));
  if (m.data) {
    const data = new Uint8Array(m.data, m.off, m.len);
    h.whole?.update(data);
    let at = 0;
    if (sha256Chunks && h.chunk && h.fill === 0 && data.length >= 2 * h.chunk) {
      const whole = data.length - (data.length % h.chunk);
      const sums = sha256Chunks(data.subarray(0, whole), h.chunk);
      for (let i = 0; i < sums.length; i += 32) h.sums.push(sums.subarray(i, i + 32));
      at = whole;
    }
    while (h.chunk && at < data.length) {
      const n = Math.min(data.length - at, h.chunk - h.fill);
      (h.part ??= createHash('sha256')).update(data.subarray(at, at + n));
      at += n;
      h.fill += n;
      if (h.fill === h.chunk) {
        h.sums.push(h.part.digest());
        h.part = null;
        h.fill = 0;
      }
    }
    Atomics.add(m.done, 0, 1);
    Atomics.notify(m.done, 0);
    return;
  }
  hashes.delete(m.id);
  if (h.part) h.sums.push(h.part.digest());
  const out = new Uint8Array(m.result.buffer);
  // A tree hash is of the chunk digests, each byte having been hashed once.
  out.set(h.whole ? h.whole.digest() : createHash('sha256').update(Buffer.concat(h.sums)).digest(), 4);
  out.set(Buffer.concat(h.sums).subarray(0, out.length - 36), 36);
  Atomics.store(m.result, 0, 1);
  Atomics.notify(m.result, 0);
});
`;

let hasherWorker: Worker | undefined;
let hashIds = 0;
/** Updates handed to the worker, and (shared with it) how many it has finished. */
let posted = 0;
const finished = new Int32Array(new SharedArrayBuffer(4));
/** Set by the worker as it starts (shared). */
const started = new Int32Array(new SharedArrayBuffer(4));
/** Why the worker ended, if it did (known once this thread's event loop has run since). */
let hasherEnded: string | undefined;
/**
 * A wait for the worker ends in an error once it has finished nothing for
 * this long: it hashes a piece in milliseconds, so it is dead (it failed to
 * start, or ended) and would never answer.
 */
const HASHER_SILENCE_MS = 20_000;
/** Updates handed to the worker and not hashed yet, at most: beyond it, `update` waits. */
const HASH_BACKLOG = 8;

/** Files being read on the worker (readFileOffThread), by id. */
const reads = new Map<number, { resolve: (text: string) => void; reject: (e: Error) => void }>();
let readIds = 0;

function hasher(): Worker {
  if (!hasherWorker) {
    // No flags of this process's: they are for its own code (--input-type=module, for one, would make
    // this source fail to load, and the worker would never answer).
    const worker = new Worker(HASHER_SOURCE, { eval: true, execArgv: [], workerData: { addon: dataPath('build', 'Release', 'vjail.node'), started } });
    hasherWorker = worker;
    // Its first word only ('error' comes before 'exit'); every read pending was posted to it.
    const ended = (why: string): void => {
      if (hasherWorker !== worker) return;
      hasherEnded = why;
      hasherWorker = undefined;
      for (const r of reads.values()) r.reject(new Error(`internal: the hashing thread ended (${why})`));
      reads.clear();
    };
    worker.on('error', (e) => ended(e.message));
    worker.on('exit', (code) => ended(`exit code ${code}`));
    worker.on('message', (m: { readId: number; text?: string; error?: string; code?: string }) => {
      const r = reads.get(m.readId);
      reads.delete(m.readId);
      if (!reads.size) worker.unref();
      if (m.text !== undefined) r?.resolve(m.text);
      else r?.reject(Object.assign(new Error(m.error), { code: m.code }));
    });
    // After the listener: adding a 'message' listener refs the worker again, and a process that
    // only hashed (a restore) would then never end on its own.
    worker.unref();
  }
  return hasherWorker;
}

/**
 * Read a whole text file on the hashing thread, every read(2) one after
 * another there: for a /proc file whose reads are each slow (smaps walks
 * page tables), where the thread pool would hand every piece back to the
 * event loop before asking for the next. Start the thread ahead
 * (`new OffThreadHash()`) where its start-up must not count.
 */
export function readFileOffThread(path: string): Promise<string> {
  const readId = readIds++;
  return new Promise((resolve, reject) => {
    reads.set(readId, { resolve, reject });
    // Awaited, the answer must keep the event loop alive.
    hasher().ref();
    hasherWorker!.postMessage({ readFile: path, readId });
  });
}

/**
 * Wait until `done()`, woken through `cell`; bounded: an error once the
 * worker has finished nothing for HASHER_SILENCE_MS, saying what was awaited.
 */
function waitWorker(cell: Int32Array, done: () => boolean, what: string): void {
  let progress = Atomics.load(finished, 0);
  let since = performance.now();
  while (!done()) {
    Atomics.wait(cell, 0, Atomics.load(cell, 0), 1000);
    const now = Atomics.load(finished, 0);
    if (now !== progress) {
      progress = now;
      since = performance.now();
    } else if (performance.now() - since > HASHER_SILENCE_MS) {
      const state = Atomics.load(started, 0) ? `it finished nothing for ${HASHER_SILENCE_MS / 1000} s${hasherEnded ? `; it ended: ${hasherEnded}` : ''}` : `it did not start within ${HASHER_SILENCE_MS / 1000} s`;
      throw new Error(`internal: the hashing thread did not answer while ${what} (${state})`);
    }
  }
}

/** Wait until the worker has finished update number `n` (counted from 1). */
function waitFinished(n: number): void {
  waitWorker(finished, () => Atomics.load(finished, 0) >= n, 'page data waited to be hashed');
}

/**
 * Page data moves through a few reused buffers: fresh memory is slow to
 * fault in on some hosts. 1 MiB chunks stay in cache between being copied
 * and hashed; at 256 MiB they measured faster than 2 and 8 MiB (write(2)
 * of 8 MiB chunks took several times as long) and than 256-512 KiB.
 */
export const PAGE_BUFFER_SIZE = 1 << 20;
const RING: { buf: Buffer; lastUse: number }[] = [];
const RING_SIZE = 8;
let ringNext = 0;

/**
 * A buffer of PAGE_BUFFER_SIZE bytes to read page data into, taken in turn
 * from a small ring. Its previous contents have been hashed if they were
 * handed to an OffThreadHash; it is valid until RING_SIZE more are taken.
 */
export function pageBuffer(): Buffer {
  if (RING.length < RING_SIZE) {
    RING.push({ buf: Buffer.from(new SharedArrayBuffer(PAGE_BUFFER_SIZE)), lastUse: 0 });
  }
  const slot = RING[ringNext]!;
  ringNext = (ringNext + 1) % RING_SIZE;
  waitFinished(slot.lastUse);
  return slot.buf;
}

/** A sha256 computed on the worker thread; `update` never copies a page buffer. */
export class OffThreadHash {
  private readonly id = hashIds++;
  private bytes = 0;

  /**
   * With `chunk` (bytes), also a sha256 of every `chunk` bytes hashed (the
   * last piece may be shorter): `chunkDigests`. With `tree` too, the digest
   * is not of the bytes but of the chunk digests, one after another (32
   * bytes each): every byte is hashed once, not twice (`treeDigest`).
   */
  constructor(
    private readonly chunk = 0,
    private readonly tree = false,
  ) {
    if (tree && !chunk) throw new Error('internal: a tree hash needs a chunk size');
  }
  private sums = Buffer.alloc(0);

  /**
   * Hash `data`. A view of a page buffer is shared with the worker (it
   * must not change until hashed: `pageBuffer` sees to that); a Buffer that
   * owns its whole ArrayBuffer is moved there (unusable here afterwards);
   * anything else is copied.
   */
  update(data: Buffer): void {
    if (data.length === 0) return;
    let ab = data.buffer as ArrayBuffer | SharedArrayBuffer;
    let off = data.byteOffset;
    const slot = RING.find((r) => r.buf.buffer === ab);
    if (!slot && (ab instanceof SharedArrayBuffer || off !== 0 || ab.byteLength !== data.length)) {
      ab = new Uint8Array(data).buffer;
      off = 0;
    }
    waitFinished(posted - HASH_BACKLOG);
    posted++;
    if (slot) slot.lastUse = posted;
    this.bytes += data.length;
    hasher().postMessage({ id: this.id, chunk: this.chunk, tree: this.tree, data: ab, off, len: data.length, done: finished }, slot ? [] : [ab as ArrayBuffer]);
  }

  digest(): string {
    const pieces = this.chunk ? Math.ceil(this.bytes / this.chunk) : 0;
    const result = new Int32Array(new SharedArrayBuffer(4 + 32 + 32 * pieces));
    hasher().postMessage({ id: this.id, chunk: this.chunk, tree: this.tree, result });
    waitWorker(result, () => Atomics.load(result, 0) !== 0, 'a digest was awaited');
    const out = Buffer.from(result.buffer);
    this.sums = Buffer.from(out.subarray(36, 36 + 32 * pieces));
    return out.subarray(4, 36).toString('hex');
  }

  /** The digests of each chunk (32 bytes each, in order), once `digest` has returned. */
  chunkDigests(): Buffer {
    return this.sums;
  }
}

/**
 * Start the hashing worker now and hash a page on it: for a process that
 * has time now and hashes page data later (a page server's supervisor
 * waiting for its image), whose first hash then does not wait for the
 * worker to start (tens of ms).
 */
export function startHasher(): void {
  const h = new OffThreadHash();
  h.update(Buffer.alloc(4096));
  h.digest();
}

/** The sha256 of chunk digests (32 bytes each, one after another), as a page file's `sha256` of version 6 and later is. */
export function treeDigest(chunkSums: Buffer): string {
  return createHash('sha256').update(chunkSums).digest('hex');
}

/** sha256 of a file, streamed. */
export function sha256File(path: string): string {
  const fd = openSync(path, 'r');
  try {
    return sha256Fd(fd);
  } finally {
    closeSync(fd);
  }
}

/** sha256 of what is left to read from an open file. */
export function sha256Fd(fd: number): string {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(1 << 20);
  for (;;) {
    const n = readSync(fd, buf, 0, buf.length, null);
    if (n === 0) break;
    hash.update(buf.subarray(0, n));
  }
  return hash.digest('hex');
}
