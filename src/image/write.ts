/**
 * Writing an image: page files, then the manifest and IMAGE, under a
 * temporary name beside DIR; fsynced, read back and checked, then renamed
 * into place, so DIR is either complete or absent. A file system that is
 * full or read-only fails the write with one line naming it (ImageError),
 * and `abort` removes what was written.
 */
import { StepTimer } from '../timings.js';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, ftruncateSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { pageCopyAddon } from '../native/pagecopy.js';
import { ImageError } from './errors.js';
import { OffThreadHash, treeDigest } from './pagedata.js';
import { openImage, type OpenedImage } from './read.js';
import { SIGNATURE_FILE, signatureText } from './sign.js';
import { BLOB_PACK_FILE, CHUNK_SUMS_FILE, CHUNK_SUMS_MAX_BYTES, HEADER_FILE, IMAGE_MAGIC, IMAGE_VERSION, type Manifest, MANIFEST_FILE, MANIFEST_MAX_BYTES, PAGE_CHUNK_BYTES, PAGE_SIZE, type Pages, type Blob } from './schema.js';

function header(manifestSha: string): string {
  return `${IMAGE_MAGIC} ${IMAGE_VERSION}\nmanifest sha256:${manifestSha}\n`;
}

/** Why a write failed, for the errors a user can do something about. */
const WRITE_ERRORS: Record<string, string> = {
  ENOSPC: 'its file system is full (ENOSPC); free some space or choose another --image',
  EDQUOT: 'the disk quota is exhausted (EDQUOT); free some space or choose another --image',
  EROFS: 'its file system is read-only (EROFS); choose another --image',
  EACCES: 'permission denied (EACCES); choose a directory you can write to',
  EPERM: 'permission denied (EPERM); choose a directory you can write to',
  EIO: 'an I/O error occurred (EIO)',
  EFBIG: 'a file would exceed the file system\'s size limit (EFBIG)',
};

/** A failed file-system call while writing `dir`, as one line; ImageErrors and bugs pass as they are. */
function writeFailure(e: unknown, dir: string): unknown {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (e instanceof ImageError || typeof code !== 'string' || !/^E[A-Z]+$/.test(code)) return e;
  return new ImageError(`cannot write the image ${dir}: ${WRITE_ERRORS[code] ?? `${code} (${(e as Error).message})`}`);
}

/** Run `fn`, turning a file-system failure into an ImageError about `dir`. */
function writing<T>(dir: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw writeFailure(e, dir);
  }
}

/** fsync a file or directory by path. */
export function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Start writing a range just written back to disk, so that the fsync at the
 * end of the file waits only for the last few chunks. Only a head start:
 * where the file system refuses, the fsync does all of it, as before.
 */
function startWriteback(fd: number, offset: number, length: number): void {
  try {
    pageCopyAddon().syncFileRange(fd, offset, length);
  } catch {
    // The fsync in `close` still makes the data durable.
  }
}

/**
 * One page-data file being written. Each buffer is written, then hashed (on
 * the worker thread): the digests are of exactly the bytes handed to
 * write(2), one per chunk, and the file's of those (format 6: each byte is
 * hashed once).
 */
export class PageFileWriter {
  private fd: number;
  private readonly hash = new OffThreadHash(PAGE_CHUNK_BYTES, true);
  private size = 0;
  readonly runs: [number, number][] = [];

  constructor(
    readonly name: string,
    path: string,
    private readonly dir: string,
    /** Keeps the file's chunk digests for sums.img (format 8); returns where they are in it. */
    private readonly keepSums: (sums: Buffer) => number,
    private readonly progress?: (bytes: number) => void,
    /** false: not written back nor synced (a temporary image read once right here, by `vjail migrate`). */
    private readonly durable = true,
  ) {
    this.fd = writing(dir, () => openSync(path, 'wx', 0o600));
  }

  /** Append the pages [firstPage, firstPage + data.length / PAGE_SIZE) of the mapping; `data` is given up. */
  append(firstPage: number, data: Buffer): void {
    const count = data.length / PAGE_SIZE;
    const last = this.runs.at(-1);
    if (last && last[0] + last[1] === firstPage) last[1] += count;
    else this.runs.push([firstPage, count]);
    writing(this.dir, () => {
      for (let off = 0; off < data.length; ) off += writeSync(this.fd, data, off, data.length - off);
    });
    if (this.durable) startWriteback(this.fd, this.size, data.length);
    this.size += data.length;
    this.hash.update(data);
    this.progress?.(data.length);
  }

  /**
   * A page file whose bytes are held elsewhere (a migration's receiver
   * makes it from its copy of a pre-dump's store): only its size is set
   * here, its digests are those given (32 bytes each, in order), one per `chunk` bytes of it. Only
   * for an image that is not durable, and sent at once.
   */
  described(runs: [number, number][], size: number, chunk: number, sums: Buffer): Pages {
    if (this.durable || this.size || this.runs.length) throw new Error('internal: only an empty page file of a temporary image is described');
    if (chunk % PAGE_SIZE || sums.length !== 32 * Math.ceil(size / chunk)) throw new Error('internal: a described page file needs a digest per chunk');
    writing(this.dir, () => ftruncateSync(this.fd, size));
    this.discard();
    return { file: this.name, size, sha256: treeDigest(sums), runs, chunks: { size: chunk, offset: this.keepSums(sums) } };
  }

  close(): Pages {
    if (this.durable) writing(this.dir, () => fsyncSync(this.fd));
    this.discard();
    const sha256 = this.hash.digest();
    return { file: this.name, size: this.size, sha256, runs: this.runs, chunks: { size: PAGE_CHUNK_BYTES, offset: this.keepSums(this.hash.chunkDigests()) } };
  }

  /** Close the file without finishing it (abort: its space is freed once it is removed). */
  discard(): void {
    if (this.fd < 0) return;
    closeSync(this.fd);
    this.fd = -1;
  }
}

/**
 * Writes an image under a temporary name beside its destination; `commit`
 * publishes it by rename, `abort` removes every trace of it.
 */
export class ImageWriter {
  readonly tmpDir: string;
  private pageFiles = 0;
  private readonly open: PageFileWriter[] = [];

  /**
   * `progress` is called with the size of each piece of page data written.
   * `durable` false: nothing is synced to disk (page files, manifest, header), for a temporary
   * image read back at once by this process (a migration sends it and
   * removes it); what is committed is still checked as always.
   */
  constructor(
    readonly dir: string,
    private readonly progress?: (bytes: number) => void,
    private readonly durable = true,
  ) {
    if (existsSync(dir)) throw new ImageError(`${dir} already exists; choose a new image directory`);
    const parent = dirname(dir);
    if (!existsSync(parent)) throw new ImageError(`cannot write the image: ${parent} does not exist`);
    this.tmpDir = join(parent, `.${basename(dir)}.partial-${process.pid}`);
    writing(dir, () => {
      rmSync(this.tmpDir, { recursive: true, force: true });
      mkdirSync(this.tmpDir, { mode: 0o700 });
    });
  }

  pageFile(): PageFileWriter {
    const name = `pages-${this.pageFiles++}.img`;
    const w = new PageFileWriter(name, join(this.tmpDir, name), this.dir, (sums) => this.keepSums(sums), this.progress, this.durable);
    this.open.push(w);
    return w;
  }

  /**
   * Bytes to keep beside the manifest (a pipe's queue, ...): listed in
   * `blobs` and appended to blobs.img, which `commit` writes and fsyncs
   * once. A file and an fsync per blob cost a journal commit apiece: 250
   * pipes with bytes queued added most of a second to a checkpoint.
   */
  blob(data: Buffer): Blob {
    const file = `blob-${this.blobs.length}.img`;
    const blob = { file, size: data.length, sha256: createHash('sha256').update(data).digest('hex'), offset: this.packBytes };
    this.pack.push(Buffer.from(data));
    this.packBytes += data.length;
    this.blobs.push(blob);
    return blob;
  }

  private readonly pack: Buffer[] = [];
  private packBytes = 0;

  /**
   * Every page file's chunk digests, written once to sums.img by `commit`
   * (format 8): in the manifest, a migrated 1 GiB jail's were 1 MB of hex
   * to write and read while it was stopped; a file each, a dozen small
   * files more to send and write.
   */
  private keepSums(sums: Buffer): number {
    const at = this.sumsBytes;
    this.sums.push(sums);
    this.sumsBytes += sums.length;
    return at;
  }

  private readonly sums: Buffer[] = [];
  private sumsBytes = 0;

  /** Every blob written so far, for the manifest. */
  readonly blobs: Blob[] = [];

  /**
   * Write the manifest, IMAGE and SIGNATURE (sign.ts), fsync, read them back
   * and check them as a reader will, and rename into place. Returns the image
   * as read back (its page files not yet hashed), under its final name.
   */
  /**
   * Write the manifest and publish the image. `readBack: false` is for a
   * temporary image whose only reader checks it in full before anything of
   * it runs (`vjail migrate`'s receiver): reading it back here would check
   * the same manifest twice while the jail is stopped.
   */
  commit(manifest: Manifest, signKey?: string, opts: { readBack?: boolean } = {}): OpenedImage {
    // Checked once, as a reader will see it: the read-back below parses and validates the text written.
    const t = new StepTimer('commit');
    const text = `${JSON.stringify(manifest, null, 1)}\n`;
    t.lap(`stringify (${text.length} bytes)`);
    // What readers refuse to read is not written: an image that was written must restore.
    if (Buffer.byteLength(text) > MANIFEST_MAX_BYTES) {
      throw new ImageError(`the jail's manifest would be ${Buffer.byteLength(text)} bytes, more than images may hold (${MANIFEST_MAX_BYTES}); it has too many processes, threads or mappings to checkpoint`);
    }
    if (this.sumsBytes > CHUNK_SUMS_MAX_BYTES) {
      throw new ImageError(`the jail's chunk checksums would take ${this.sumsBytes} bytes, more than images may hold (${CHUNK_SUMS_MAX_BYTES}); it has too much memory to checkpoint`);
    }
    const sha = createHash('sha256').update(text).digest('hex');
    t.lap('sha');
    writing(this.dir, () => {
      // A temporary image (not durable: sent at once, then removed) is not synced either.
      const sync = this.durable;
      if (this.blobs.length) writeFileSynced(join(this.tmpDir, BLOB_PACK_FILE), Buffer.concat(this.pack), sync);
      if (this.sums.length) writeFileSynced(join(this.tmpDir, CHUNK_SUMS_FILE), Buffer.concat(this.sums), sync);
      writeFileSynced(join(this.tmpDir, MANIFEST_FILE), text, sync);
      writeFileSynced(join(this.tmpDir, HEADER_FILE), header(sha), sync);
      writeFileSynced(join(this.tmpDir, SIGNATURE_FILE), signatureText(header(sha), signKey), sync);
      if (sync) fsyncPath(this.tmpDir);
    });
    // Read back the header and manifest and check them, and every page file's size; the page
    // files' sha256 are of the bytes written to them, which fsync has made durable (docs/IMAGE.md).
    t.lap('write');
    let opened: OpenedImage = { dir: this.tmpDir, version: IMAGE_VERSION, manifest };
    if (opts.readBack ?? true) {
      try {
        opened = openImage(this.tmpDir, { verifyPages: false });
      } catch (e) {
        // What was just written and synced does not read back: a fault of vjail's (or the disk's), not of the jail.
        if (e instanceof ImageError) throw new ImageError(`internal: the image written does not read back: ${e.message}`);
        throw e;
      }
      t.lap('read back');
    }
    if (existsSync(this.dir)) throw new ImageError(`${this.dir} appeared while the image was written; it was left untouched`);
    writing(this.dir, () => {
      renameSync(this.tmpDir, this.dir);
      if (this.durable) fsyncPath(dirname(this.dir));
    });
    return { ...opened, dir: this.dir };
  }

  abort(): void {
    for (const w of this.open) w.discard();
    rmSync(this.tmpDir, { recursive: true, force: true });
  }
}

function writeFileSynced(path: string, text: string | Buffer, sync = true): void {
  const fd = openSync(path, 'wx', 0o600);
  try {
    const data = Buffer.from(text);
    for (let off = 0; off < data.length; ) off += writeSync(fd, data, off, data.length - off);
    if (sync) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

