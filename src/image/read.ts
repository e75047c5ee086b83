/**
 * Reading an image: IMAGE header (magic, version), manifest checksum and
 * schema (older versions upgraded), the tree's shape, and every page file's
 * size, runs and (optionally) sha256. Reads only, creates nothing.
 *
 * An image may come from anywhere, so every file of it is opened without
 * following a symbolic link and without blocking (a FIFO), must be a
 * regular file (fstat of the descriptor opened), and its size is bounded
 * before anything is read: a link to /dev/zero or a FIFO in place of a file
 * is refused at once, in one line.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, statSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { describeIssue, ImageError } from './errors.js';
import { sha256Fd, treeDigest } from './pagedata.js';
import {
  type Blob, BLOB_PACK_FILE, CHUNK_SUMS_FILE, CHUNK_SUMS_MAX_BYTES, HEADER_FILE, HEADER_MAX_BYTES, IMAGE_MAGIC, IMAGE_VERSION, type Manifest, MANIFEST_FILE, MANIFEST_MAX_BYTES, type Mapping, PAGE_SIZE, type Pages,
  READABLE_VERSIONS, fromHex, MAX_MAPPINGS, MAX_PROCESSES, MAX_THREADS,
} from './schema.js';
import { parseManifest } from './upgrade.js';
import { sampleManifestText } from './sample.js';
import { StepTimer } from '../timings.js';
import { JsonSyntaxError, parseJsonExact } from '../policy/json.js';

function kindOf(st: Stats): string {
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isDirectory()) return 'a directory';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/**
 * Open the file `name` of the image in `dir` for reading, refused unless it
 * is a regular file (checked before opening and again on the descriptor)
 * whose size is at most `max`, or exactly `exact` (with `said`, the message
 * naming where that size comes from). Returns the descriptor and the size.
 */
export function openImageFile(dir: string, name: string, size: { max: number } | { exact: number; said: string }): { fd: number; size: number } {
  const damaged = (why: string): ImageError => new ImageError(`${dir} is damaged: ${name} ${why}`);
  const path = join(dir, name);
  let before: Stats;
  try {
    before = lstatSync(path);
  } catch {
    throw damaged('is missing');
  }
  if (!before.isFile()) throw damaged(`is ${kindOf(before)}; image files must be regular files`);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw damaged('is a symbolic link; image files must be regular files');
    if (code === 'ENOENT') throw damaged('is missing');
    throw damaged(`cannot be opened (${code ?? (e as Error).message})`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw damaged(`is ${kindOf(st)}; image files must be regular files`);
    if ('max' in size && st.size > size.max) throw damaged(`is ${st.size} bytes, more than an image's ${name} may be (${size.max})`);
    if ('exact' in size && st.size !== size.exact) throw damaged(`is ${st.size} bytes, ${size.said} ${size.exact}`);
    return { fd, size: st.size };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/** The whole of a small image file (IMAGE, manifest.json), its size bounded by `max`. */
export function readImageFile(dir: string, name: string, max: number): Buffer {
  const { fd, size } = openImageFile(dir, name, { max });
  try {
    const buf = Buffer.alloc(size);
    for (let off = 0; off < size; ) {
      const n = readSync(fd, buf, off, size - off, off);
      if (n === 0) throw new ImageError(`${dir} is damaged: ${name} changed while it was read`);
      off += n;
    }
    return buf;
  } finally {
    closeSync(fd);
  }
}

/** Counts beyond the bounds, checked on the raw JSON of any version before the schema walks it. */
function countProblem(json: unknown): string | undefined {
  const procs = (json as { processes?: unknown })?.processes;
  if (!Array.isArray(procs)) return undefined;
  if (procs.length > MAX_PROCESSES) return `${procs.length} processes, more than the ${MAX_PROCESSES} an image may hold`;
  for (const p of procs as { pid?: unknown; threads?: unknown; mappings?: unknown }[]) {
    if (Array.isArray(p?.threads) && p.threads.length > MAX_THREADS) return `process ${String(p.pid)} has ${p.threads.length} threads, more than the ${MAX_THREADS} allowed`;
    if (Array.isArray(p?.mappings) && p.mappings.length > MAX_MAPPINGS) return `process ${String(p.pid)} has ${p.mappings.length} mappings, more than the ${MAX_MAPPINGS} allowed`;
  }
  return undefined;
}

/** What the schema cannot say: the tree's shape, unique PIDs and TIDs. Returns the first problem. */
function treeProblem(m: Manifest): string | undefined {
  const seen = new Set<number>();
  for (const [i, p] of m.processes.entries()) {
    if (p.state === 'live' && p.threads[0]!.tid !== p.pid) return `process ${p.pid}'s first thread is not its leader`;
    for (const id of p.state === 'live' ? p.threads.map((t) => t.tid) : [p.pid]) {
      if (seen.has(id)) return `PID ${id} appears twice`;
      seen.add(id);
    }
    if (i > 0 && !(p.ppid === 1 || m.processes.slice(0, i).some((q) => q.pid === p.ppid && q.state === 'live'))) {
      return `process ${p.pid} comes before its parent ${p.ppid}`;
    }
  }
  if (!m.pidNamespace && (m.processes.length !== 1 || m.processes[0]!.state !== 'live' || m.processes[0]!.threads.length !== 1)) {
    return 'an image without a PID namespace holds exactly one single-threaded process';
  }
  if (m.processes[0]!.state !== 'live') return 'the first process is a zombie';
  return undefined;
}


export interface OpenedImage {
  dir: string;
  /** The version on disk; `manifest` is always in the current version's shape. */
  version: number;
  manifest: Manifest;
  /** Set by a caller that wants to hear of page data as it is loaded (its size, piece by piece). */
  progress?: (bytes: number) => void;
}

/**
 * Read and verify an image: IMAGE header (magic, version), manifest checksum
 * and schema, and every page file's size, runs and sha256. Throws ImageError
 * with a one-line reason; reads only, creates nothing.
 */
export function openImage(dir: string, opts: { verifyPages?: boolean } = {}): OpenedImage {
  let st;
  try {
    st = statSync(dir);
  } catch {
    throw new ImageError(`no image at ${dir}`);
  }
  if (!st.isDirectory()) throw new ImageError(`${dir} is not an image directory`);
  let headerStat: Stats | undefined;
  try {
    headerStat = lstatSync(join(dir, HEADER_FILE));
  } catch {
    throw new ImageError(`${dir} is not a vjail image (no ${HEADER_FILE} file)`);
  }
  if (!headerStat.isFile()) throw new ImageError(`${dir} is damaged: ${HEADER_FILE} is ${kindOf(headerStat)}; image files must be regular files`);
  const head = readImageFile(dir, HEADER_FILE, HEADER_MAX_BYTES).toString('utf8');
  const m = /^(\S+) (\d+)\nmanifest sha256:([0-9a-f]{64})\n$/.exec(head);
  if (!m || m[1] !== IMAGE_MAGIC) throw new ImageError(`${dir} is not a vjail image (bad ${HEADER_FILE} header)`);
  const version = Number(m[2]);
  if (!(READABLE_VERSIONS as readonly number[]).includes(version)) {
    throw new ImageError(`${dir} is a version ${m[2]} image; this vjail reads versions ${READABLE_VERSIONS.slice(0, -1).join(', ')} and ${READABLE_VERSIONS.at(-1)}`);
  }
  const timer = new StepTimer('open image');
  const text = readImageFile(dir, MANIFEST_FILE, MANIFEST_MAX_BYTES);
  if (createHash('sha256').update(text).digest('hex') !== m[3]) {
    throw new ImageError(`${dir} is damaged: ${MANIFEST_FILE} does not match its checksum`);
  }
  let json: unknown;
  try {
    // Strict: a key given twice (which one counts would depend on the reader) or absurd nesting is refused.
    json = parseJsonExact(text.toString('utf8'), { bigints: false });
  } catch (e) {
    if (!(e instanceof JsonSyntaxError)) throw e;
    throw new ImageError(`${dir} is damaged: ${MANIFEST_FILE} is not valid JSON: ${e.message}`);
  }
  timer.lap('read, sha256, JSON');
  const tooMany = countProblem(json);
  if (tooMany) throw new ImageError(`${dir} has an invalid manifest: ${tooMany}`);
  const parsed = parseManifest(version, json);
  if (!parsed.ok) throw new ImageError(`${dir} has an invalid manifest: ${describeIssue(parsed.error)}`);
  const { manifest } = parsed;
  timer.lap('schema');
  const problem = treeProblem(manifest);
  if (problem) throw new ImageError(`${dir} has an invalid manifest: ${problem}`);
  const pack = version >= 8 ? readChunkSums(dir, manifest) : null;
  for (const p of manifest.processes) {
    if (p.state !== 'live') continue;
    for (const [i, map] of p.mappings.entries()) checkMapping(dir, i, map, opts.verifyPages ?? true, version, pack);
    const overlap = overlapProblem(p.mappings);
    if (overlap) throw new ImageError(`${dir} has an invalid manifest: process ${p.pid}: ${overlap}`);
  }
  const blobs = new Set<string>();
  const packed = manifest.blobs.filter((b) => b.offset !== undefined);
  if (packed.length && version < 6) throw new ImageError(`${dir} has an invalid manifest: a version ${version} image has no ${BLOB_PACK_FILE}`);
  if (packed.length !== manifest.blobs.length && version >= 6) throw new ImageError(`${dir} has an invalid manifest: a blob has no offset in ${BLOB_PACK_FILE}`);
  if (packed.length) {
    // Back to back, in order, and blobs.img exactly as long as they are.
    let at = 0;
    for (const b of packed) {
      if (b.offset !== at) throw new ImageError(`${dir} has an invalid manifest: ${b.file} is at ${b.offset} in ${BLOB_PACK_FILE}, not at ${at} after the blobs before it`);
      at += b.size;
    }
    checkDataFile(dir, BLOB_PACK_FILE, at);
  }
  for (const b of manifest.blobs) {
    if (blobs.has(b.file)) throw new ImageError(`${dir} has an invalid manifest: blob ${b.file} appears twice`);
    if (b.offset === undefined) checkDataFile(dir, b.file, b.size);
    blobs.add(b.file);
  }
  for (const p of manifest.pipes) {
    if (p.data !== null && !blobs.has(p.data)) throw new ImageError(`${dir} has an invalid manifest: pipe ${p.id} names ${p.data}, which is not among its blobs`);
  }
  const ids = new Set<number>();
  for (const d of manifest.descriptions) {
    if (ids.has(d.id)) throw new ImageError(`${dir} has an invalid manifest: description ${d.id} appears twice`);
    ids.add(d.id);
  }
  for (const p of manifest.processes) {
    if (p.state !== 'live') continue;
    const fds = new Set<number>();
    for (const f of p.fds) {
      if (!ids.has(f.description)) throw new ImageError(`${dir} has an invalid manifest: fd ${f.fd} of process ${p.pid} names description ${f.description}, which it does not hold`);
      if (fds.has(f.fd)) throw new ImageError(`${dir} has an invalid manifest: fd ${f.fd} of process ${p.pid} appears twice`);
      fds.add(f.fd);
    }
  }
  const problemObj = objectProblem(manifest);
  if (problemObj) throw new ImageError(`${dir} has an invalid manifest: ${problemObj}`);
  for (const o of manifest.sharedMemory) {
    if (o.pages) checkPages(dir, `shared-memory object ${o.id}`, o.pages, Math.ceil(o.size / PAGE_SIZE), opts.verifyPages ?? true, version, pack);
  }
  timer.lap('the rest');
  return { dir, version, manifest };
}

/**
 * Run the manifest's parser and checks once on a made-up manifest shaped as
 * a real one (sample.ts): a process started before its image (a page
 * server's supervisor) then checks the real one with them warm. Cold, the
 * first check of a migrated jail's manifest cost 10-12 ms; after a refused
 * made-up one (as this did before), still 10-12; after this, about the 4-5
 * of every later check. Reads nothing, and nothing is kept. Returns whether
 * the sample passed every check (a test keeps it so).
 */
export function warmManifestChecks(): boolean {
  const text = Buffer.from(sampleManifestText());
  createHash('sha256').update(text).digest('hex');
  const json = parseJsonExact(text.toString('utf8'), { bigints: false });
  if (countProblem(json)) return false;
  const parsed = parseManifest(IMAGE_VERSION, json);
  if (!parsed.ok) return false;
  const m = parsed.manifest;
  if (treeProblem(m) || objectProblem(m)) return false;
  return m.processes.every((p) => p.state !== 'live' || overlapProblem(p.mappings) === null);
}

/** Hash every page file of an image openImage has read without doing so, as restore will while loading them. */
export function verifyPageFiles(image: OpenedImage): void {
  const { dir, version, manifest } = image;
  const pack = version >= 8 ? readChunkSums(dir, manifest) : null;
  for (const p of manifest.processes) {
    if (p.state !== 'live') continue;
    for (const [i, map] of p.mappings.entries()) checkMapping(dir, i, map, true, version, pack);
  }
  for (const o of manifest.sharedMemory) {
    if (o.pages) checkPages(dir, `shared-memory object ${o.id}`, o.pages, Math.ceil(o.size / PAGE_SIZE), true, version, pack);
  }
}

/** A data file the manifest names must be there: a regular file of the size it says. */
function checkDataFile(dir: string, file: string, want: number): void {
  closeSync(openImageFile(dir, file, { exact: want, said: 'the manifest says' }).fd);
}

/** The size of blobs.img: its blobs lie back to back (checked by openImage). */
export function blobPackSize(m: Manifest): number {
  return m.blobs.reduce((n, b) => (b.offset === undefined ? n : n + b.size), 0);
}

/** A blob's bytes, checked against the manifest's sha256 (and opened as every image file is). */
export function readBlob(image: OpenedImage, file: string): Buffer {
  const { byFile, packSize } = blobIndexOf(image);
  const blob = byFile.get(file);
  if (!blob) throw new ImageError(`${image.dir} has an invalid manifest: no blob ${file}`);
  const kept = blob.offset !== undefined && packSize <= PACK_KEPT_BYTES;
  const data = blob.offset === undefined
    ? readAt(image.dir, file, blob.size, 0, blob.size)
    : kept
      ? packOf(image, packSize).subarray(blob.offset, blob.offset + blob.size)
      : readAt(image.dir, BLOB_PACK_FILE, packSize, blob.offset, blob.size, 'its blobs take');
  if (createHash('sha256').update(data).digest('hex') !== blob.sha256) {
    throw new ImageError(`${image.dir} is damaged: ${file}${blob.offset === undefined ? '' : ` (in ${BLOB_PACK_FILE})`} does not match its checksum`);
  }
  // A slice of the kept pack is copied: the caller may keep or change it without touching the next blob's bytes.
  return kept ? Buffer.from(data) : data;
}

/** A pack up to this size is read once and kept while the image is (a big one, say a memfd's contents, is read blob by blob). */
const PACK_KEPT_BYTES = 64 * 2 ** 20;

/**
 * Per image: its blobs by name, and a small blobs.img read once (a restore of 1000
 * descriptors asks for hundreds of blobs; opening the pack and searching the
 * list for each was quadratic and took most of placing them).
 */
const blobIndexes = new WeakMap<OpenedImage, { byFile: Map<string, Blob>; packSize: number; pack?: Buffer }>();

function blobIndexOf(image: OpenedImage): { byFile: Map<string, Blob>; packSize: number; pack?: Buffer } {
  let index = blobIndexes.get(image);
  if (!index) blobIndexes.set(image, (index = { byFile: new Map(image.manifest.blobs.map((b) => [b.file, b])), packSize: blobPackSize(image.manifest) }));
  return index;
}

function packOf(image: OpenedImage, packSize: number): Buffer {
  const index = blobIndexOf(image);
  index.pack ??= readAt(image.dir, BLOB_PACK_FILE, packSize, 0, packSize, 'its blobs take');
  return index.pack;
}

/** `length` bytes at `at` of an image file of `size` bytes, opened as every image file is. */
function readAt(dir: string, file: string, size: number, at: number, length: number, said = 'the manifest says'): Buffer {
  const { fd } = openImageFile(dir, file, { exact: size, said });
  const data = Buffer.alloc(length);
  try {
    for (let off = 0; off < length; ) {
      const n = readSync(fd, data, off, length - off, at + off);
      if (n === 0) throw new ImageError(`${dir} is damaged: ${file} changed while it was read`);
      off += n;
    }
  } finally {
    closeSync(fd);
  }
  return data;
}

function checkMapping(dir: string, i: number, map: Mapping, verifyPages: boolean, version: number, pack: Buffer | null): void {
  const start = fromHex(map.start);
  const end = fromHex(map.end);
  const pageSize = BigInt(PAGE_SIZE);
  if (end <= start || start % pageSize || end % pageSize) {
    throw new ImageError(`${dir} has an invalid manifest: mapping ${i} (${map.start}-${map.end}) is not page-aligned`);
  }
  if (map.pages) checkPages(dir, `mapping ${i}`, map.pages, Number((end - start) / pageSize), verifyPages, version, pack);
}

/** Where the kernel puts the legacy vsyscall page, the one mapping above user space. */
const VSYSCALL = { start: 0xffffffffff600000n, end: 0xffffffffff601000n };

/**
 * A process's mappings never overlap (its /proc/PID/maps cannot), and a
 * vsyscall page is where the kernel puts it. Restore maps each at its
 * address with MAP_FIXED, over whatever is there: an overlap would lose
 * data, and one over the image's vDSO block would replace the only code
 * the restorer keeps while it maps the image (its syscall instruction).
 */
function overlapProblem(mappings: Mapping[]): string | null {
  const sorted = mappings.map((m) => ({ m, start: fromHex(m.start), end: fromHex(m.end) })).sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const what = (x: { m: Mapping }) => `${x.m.start}-${x.m.end} (${x.m.name ?? x.m.kind})`;
  for (const [i, x] of sorted.entries()) {
    if (x.m.kind === 'vsyscall' && (x.start !== VSYSCALL.start || x.end !== VSYSCALL.end)) return `its vsyscall mapping ${what(x)} is not where the kernel puts it`;
    const prev = sorted[i - 1];
    if (prev && x.start < prev.end) return `mappings ${what(prev)} and ${what(x)} overlap`;
  }
  return null;
}

/** Ids unique, and every mapping of kind `object` names one. */
function objectProblem(m: Manifest): string | null {
  const ids = new Set(m.sharedMemory.map((o) => o.id));
  if (ids.size !== m.sharedMemory.length) return 'two shared-memory objects have the same id';
  for (const p of m.processes) {
    if (p.state !== 'live') continue;
    for (const map of p.mappings) {
      if ((map.kind === 'object') !== (map.object !== undefined)) return `mapping ${map.start} of process ${p.pid} has kind ${map.kind} ${map.object === undefined ? 'without' : 'with'} an object`;
      if (map.object !== undefined && !ids.has(map.object)) return `mapping ${map.start} of process ${p.pid} names shared-memory object ${map.object}, which the image does not have`;
    }
  }
  return null;
}

function checkPages(dir: string, what: string, p: Pages, pages: number, verifyPages: boolean, version: number, pack: Buffer | null): void {
  let total = 0;
  for (const [first, count] of p.runs) {
    if (first + count > pages) throw new ImageError(`${dir} has an invalid manifest: ${what} has pages beyond its end`);
    total += count;
  }
  // A page stored twice would have two contents: no writer makes runs that overlap.
  const byFirst = p.runs.length > 1 ? [...p.runs].sort((a, b) => a[0] - b[0]) : p.runs;
  for (let i = 1; i < byFirst.length; i++) {
    if (byFirst[i]![0] < byFirst[i - 1]![0] + byFirst[i - 1]![1]) throw new ImageError(`${dir} has an invalid manifest: ${what}'s runs overlap (page ${byFirst[i]![0]} twice)`);
  }
  if (total * PAGE_SIZE !== p.size) {
    throw new ImageError(`${dir} has an invalid manifest: ${what}'s runs hold ${total * PAGE_SIZE} bytes, its page file ${p.size}`);
  }
  const tree = treeHashed({ version });
  if (tree && !p.chunks) throw new ImageError(`${dir} has an invalid manifest: ${what} has no chunk checksums`);
  loadChunkSums(dir, what, p, version, pack);
  const { fd } = openPageFileIn(dir, p);
  try {
    if (verifyPages && (tree ? treeDigestFd(fd, p.chunks!.size) : sha256Fd(fd)) !== p.sha256) {
      throw new ImageError(`${dir} is damaged: ${p.file} does not match its checksum`);
    }
  } finally {
    closeSync(fd);
  }
}

/** Each page file's chunk digests, read and checked once per manifest read (keyed by its `pages` objects). */
const sumsOf = new WeakMap<Pages, Buffer>();

/** Every page file the manifest names, with what to call it in a message. */
function pageFilesOf(m: Manifest): { what: string; pages: Pages }[] {
  const out: { what: string; pages: Pages }[] = [];
  for (const p of m.processes) {
    if (p.state !== 'live') continue;
    for (const [i, map] of p.mappings.entries()) if (map.pages) out.push({ what: `mapping ${i}`, pages: map.pages });
  }
  for (const o of m.sharedMemory) if (o.pages) out.push({ what: `shared-memory object ${o.id}`, pages: o.pages });
  return out;
}

const sumsBytes = (p: Pages): number => (p.chunks ? 32 * Math.ceil(p.size / p.chunks.size) : 0);

/** The size of sums.img (version 8): the chunk digests of every page file, back to back (checked by openImage); null if it has none. */
export function chunkSumsSize(m: Manifest): number | null {
  const placed = pageFilesOf(m).filter(({ pages }) => pages.chunks?.offset !== undefined);
  return placed.length ? placed.reduce((n, { pages }) => n + sumsBytes(pages), 0) : null;
}

/**
 * Version 8: every page file's chunk digests lie in sums.img at their
 * `offset`, back to back (in any order) and nothing else; read once, as one
 * file, and each page file's checked against its sha256 (so against the
 * manifest's checksum) before it is used. Null when no page file has digests there.
 */
function readChunkSums(dir: string, m: Manifest): Buffer | null {
  const held = pageFilesOf(m).find(({ pages }) => pages.chunks?.sha256 !== undefined);
  if (held) throw new ImageError(`${dir} has an invalid manifest: ${held.what} holds its chunk checksums, which version 8 images keep in ${CHUNK_SUMS_FILE}`);
  const placed = pageFilesOf(m).filter(({ pages }) => pages.chunks?.offset !== undefined).sort((a, b) => a.pages.chunks!.offset! - b.pages.chunks!.offset!);
  if (!placed.length) return null;
  let at = 0;
  for (const { what, pages } of placed) {
    if (pages.chunks!.offset !== at) throw new ImageError(`${dir} has an invalid manifest: ${what}'s chunk checksums are at ${pages.chunks!.offset} in ${CHUNK_SUMS_FILE}, not at ${at} after those before them`);
    at += sumsBytes(pages);
  }
  if (at > CHUNK_SUMS_MAX_BYTES) throw new ImageError(`${dir} has an invalid manifest: its chunk checksums take ${at} bytes, more than images may hold (${CHUNK_SUMS_MAX_BYTES})`);
  return readAt(dir, CHUNK_SUMS_FILE, at, 0, at, 'its chunk checksums take');
}

/**
 * A page file's chunk digests, 32 bytes each, in order (null if it has
 * none): version 8 keeps them in sums.img (`pack`, read by readChunkSums),
 * versions 5 to 7 in the manifest. Where its sha256 is of them (version 6
 * on), they are checked against it, and so against the manifest's checksum.
 */
function loadChunkSums(dir: string, what: string, p: Pages, version: number, pack: Buffer | null): Buffer | null {
  const c = p.chunks;
  if (!c) return null;
  const invalid = (why: string): ImageError => new ImageError(`${dir} has an invalid manifest: ${what} ${why}`);
  const count = Math.ceil(p.size / c.size);
  let sums: Buffer;
  if (version >= 8) {
    if (c.offset === undefined || !pack) throw invalid(`holds its chunk checksums, which version 8 images keep in ${CHUNK_SUMS_FILE}`);
    sums = pack.subarray(c.offset, c.offset + 32 * count);
  } else {
    if (c.sha256 === undefined) throw invalid(`places its chunk checksums in ${CHUNK_SUMS_FILE}, which only version 8 images have`);
    if (c.sha256.length / 64 !== count) throw invalid(`has ${c.sha256.length / 64} chunk checksums for ${count} chunks`);
    sums = Buffer.from(c.sha256, 'hex');
  }
  if (treeHashed({ version }) && treeDigest(sums) !== p.sha256) {
    throw version >= 8 ? new ImageError(`${dir} is damaged: ${CHUNK_SUMS_FILE} does not match ${what}'s checksum`) : new ImageError(`${dir} has an invalid manifest: ${what}'s sha256 is not that of its chunk checksums`);
  }
  sumsOf.set(p, sums);
  return sums;
}

/** The chunk digests of one of the image's page files (see loadChunkSums), checked by openImage. */
export function chunkSums(image: OpenedImage, p: Pages): Buffer | null {
  const known = sumsOf.get(p);
  if (known || !p.chunks) return known ?? null;
  // An image not read by openImage (ImageWriter.commit without reading it back): read and checked now.
  return loadChunkSums(image.dir, p.file, p, image.version, image.version >= 8 ? readChunkSums(image.dir, image.manifest) : null);
}

/**
 * Is a page file's sha256 of its chunk digests (version 6 and later), not
 * of its bytes? Such a file has `chunks`, and its sha256 is that of them.
 */
export function treeHashed(image: { version: number }): boolean {
  return image.version >= 6;
}

/** The tree digest (`treeHashed`) of what is left to read from an open page file, in chunks of `chunk` bytes. */
function treeDigestFd(fd: number, chunk: number): string {
  const sums: Buffer[] = [];
  const buf = Buffer.allocUnsafe(chunk);
  for (;;) {
    let n = 0;
    while (n < chunk) {
      const got = readSync(fd, buf, n, chunk - n, null);
      if (got === 0) break;
      n += got;
    }
    if (n === 0) break;
    sums.push(createHash('sha256').update(buf.subarray(0, n)).digest());
    if (n < chunk) break;
  }
  return treeDigest(Buffer.concat(sums));
}

function openPageFileIn(dir: string, pages: Pages): { fd: number; size: number } {
  return openImageFile(dir, pages.file, { exact: pages.size, said: 'the manifest says' });
}

/** Open a page-data file of an opened image for reading, checked as every image file is (regular, its size the manifest's). */
export function openPageFile(image: OpenedImage, pages: Pages): number {
  return openPageFileIn(image.dir, pages).fd;
}

/** Path of a page-data file of an opened image. */
export function pagesPath(image: OpenedImage, pages: Pages): string {
  return join(image.dir, pages.file);
}
