/**
 * Reading an image: IMAGE header (magic, version), manifest checksum and
 * schema (older versions upgraded), the tree's shape, and every page file's
 * size, runs and (optionally) sha256. Reads only, creates nothing.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describeIssue, ImageError } from './errors.js';
import { sha256File } from './pagedata.js';
import { HEADER_FILE, IMAGE_MAGIC, type Manifest, MANIFEST_FILE, type Mapping, PAGE_SIZE, type Pages, READABLE_VERSIONS, fromHex } from './schema.js';
import { parseManifest } from './upgrade.js';

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
  const headerPath = join(dir, HEADER_FILE);
  if (!existsSync(headerPath)) throw new ImageError(`${dir} is not a vjail image (no ${HEADER_FILE} file)`);
  const head = readFileSync(headerPath, 'utf8');
  const m = /^(\S+) (\d+)\nmanifest sha256:([0-9a-f]{64})\n$/.exec(head);
  if (!m || m[1] !== IMAGE_MAGIC) throw new ImageError(`${dir} is not a vjail image (bad ${HEADER_FILE} header)`);
  const version = Number(m[2]);
  if (!(READABLE_VERSIONS as readonly number[]).includes(version)) {
    throw new ImageError(`${dir} is a version ${m[2]} image; this vjail reads versions ${READABLE_VERSIONS.slice(0, -1).join(', ')} and ${READABLE_VERSIONS.at(-1)}`);
  }
  const manifestPath = join(dir, MANIFEST_FILE);
  if (!existsSync(manifestPath)) throw new ImageError(`${dir} is damaged: ${MANIFEST_FILE} is missing`);
  const text = readFileSync(manifestPath);
  if (createHash('sha256').update(text).digest('hex') !== m[3]) {
    throw new ImageError(`${dir} is damaged: ${MANIFEST_FILE} does not match its checksum`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text.toString('utf8'));
  } catch {
    throw new ImageError(`${dir} is damaged: ${MANIFEST_FILE} is not JSON`);
  }
  const parsed = parseManifest(version, json);
  if (!parsed.ok) throw new ImageError(`${dir} has an invalid manifest: ${describeIssue(parsed.error)}`);
  const { manifest } = parsed;
  const problem = treeProblem(manifest);
  if (problem) throw new ImageError(`${dir} has an invalid manifest: ${problem}`);
  for (const p of manifest.processes) {
    if (p.state !== 'live') continue;
    for (const [i, map] of p.mappings.entries()) checkMapping(dir, i, map, opts.verifyPages ?? true);
  }
  const blobs = new Set<string>();
  for (const b of manifest.blobs) {
    checkDataFile(dir, b.file, b.size);
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
    if (o.pages) checkPages(dir, `shared-memory object ${o.id}`, o.pages, Math.ceil(o.size / PAGE_SIZE), opts.verifyPages ?? true);
  }
  return { dir, version, manifest };
}

/** A data file the manifest names must be there, of the size it says. */
function checkDataFile(dir: string, file: string, want: number): void {
  let size: number;
  try {
    size = statSync(join(dir, file)).size;
  } catch {
    throw new ImageError(`${dir} is damaged: ${file} is missing`);
  }
  if (size !== want) throw new ImageError(`${dir} is damaged: ${file} is ${size} bytes, the manifest says ${want}`);
}

/** A blob's bytes, checked against the manifest's sha256. */
export function readBlob(image: OpenedImage, file: string): Buffer {
  const blob = image.manifest.blobs.find((b) => b.file === file);
  if (!blob) throw new ImageError(`${image.dir} has an invalid manifest: no blob ${file}`);
  const data = readFileSync(join(image.dir, file));
  if (data.length !== blob.size || createHash('sha256').update(data).digest('hex') !== blob.sha256) {
    throw new ImageError(`${image.dir} is damaged: ${file} does not match its checksum`);
  }
  return data;
}

function checkMapping(dir: string, i: number, map: Mapping, verifyPages: boolean): void {
  const start = fromHex(map.start);
  const end = fromHex(map.end);
  const pageSize = BigInt(PAGE_SIZE);
  if (end <= start || start % pageSize || end % pageSize) {
    throw new ImageError(`${dir} has an invalid manifest: mapping ${i} (${map.start}-${map.end}) is not page-aligned`);
  }
  if (map.pages) checkPages(dir, `mapping ${i}`, map.pages, Number((end - start) / pageSize), verifyPages);
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

function checkPages(dir: string, what: string, p: Pages, pages: number, verifyPages: boolean): void {
  let total = 0;
  for (const [first, count] of p.runs) {
    if (first + count > pages) throw new ImageError(`${dir} has an invalid manifest: ${what} has pages beyond its end`);
    total += count;
  }
  const path = join(dir, p.file);
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    throw new ImageError(`${dir} is damaged: ${p.file} is missing`);
  }
  if (size !== p.size || total * PAGE_SIZE !== size) {
    throw new ImageError(`${dir} is damaged: ${p.file} is ${size} bytes, the manifest says ${p.size}`);
  }
  if (verifyPages && sha256File(path) !== p.sha256) {
    throw new ImageError(`${dir} is damaged: ${p.file} does not match its checksum`);
  }
}

/** Path of a page-data file of an opened image. */
export function pagesPath(image: OpenedImage, pages: Pages): string {
  return join(image.dir, pages.file);
}
