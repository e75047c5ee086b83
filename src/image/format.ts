/**
 * The checkpoint image format: the one place that defines what an image
 * directory holds and how it is written and read.
 *
 *   DIR/IMAGE          "vjail-image <version>\nmanifest sha256:<hex>\n"
 *   DIR/manifest.json  the processes, validated by `manifestSchema`
 *   DIR/pages-<n>.img  raw page data of one mapping, runs back to back
 *
 * Version 4 adds each process's open regular files and directories above
 * fd 2. Version 3 added what restoring on another kernel or CPU needs: each
 * process's vDSO symbol table, the jail's clocks and the CPU features in use.
 * Versions 3, 2 (a process tree: threads, zombies, sessions and groups) and
 * 1 (one single-threaded process) are still read: `openImage` turns them
 * into the version 4 shape, with no files and the version 3 fields null.
 *
 * Every page file's size and sha256 are in the manifest; the manifest's
 * sha256 is in IMAGE. An image is written under a temporary name next to
 * DIR, fsynced, and renamed into place, so DIR is either complete or absent.
 * `openImage` checks all of it before anything is created from the image.
 */
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { z } from 'zod';
import { native } from '../native.js';

export const IMAGE_MAGIC = 'vjail-image';
export const IMAGE_VERSION = 4;
/** Versions `openImage` reads. */
export const READABLE_VERSIONS = [1, 2, 3, 4] as const;
export const PAGE_SIZE = 4096;
const HEADER_FILE = 'IMAGE';
const MANIFEST_FILE = 'manifest.json';

/** The image cannot be written or used; the message is one line saying why. */
export class ImageError extends Error {
  override name = 'ImageError';
}

/** A 64-bit value as lowercase hex ("0x7ffd1000"): JSON numbers cannot hold addresses exactly. */
const hex = z.string().regex(/^0x[0-9a-f]+$/, 'must be lowercase hex such as 0x1000');
const sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'must be a sha256 hex digest');
const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64');

export const GPR_NAMES = [
  'r15', 'r14', 'r13', 'r12', 'rbp', 'rbx', 'r11', 'r10', 'r9', 'r8', 'rax', 'rcx', 'rdx', 'rsi', 'rdi',
  'orig_rax', 'rip', 'cs', 'eflags', 'rsp', 'ss', 'fs_base', 'gs_base', 'ds', 'es', 'fs', 'gs',
] as const;
export type GprName = (typeof GPR_NAMES)[number];

const gprSchema = z.strictObject(Object.fromEntries(GPR_NAMES.map((n) => [n, hex])) as Record<GprName, typeof hex>);

/** What a mapping is, from /proc/PID/maps' path column. */
export const MAPPING_KINDS = ['anon', 'file', 'heap', 'stack', 'vdso', 'vvar', 'vvar_vclock', 'vsyscall'] as const;

const backingFileSchema = z.strictObject({
  path: z.string().startsWith('/'),
  size: z.number().int().nonnegative(),
  mtimeMs: z.number(),
  sha256,
});

const pagesSchema = z.strictObject({
  file: z.string().regex(/^pages-\d+\.img$/),
  size: z.number().int().nonnegative(),
  sha256,
  /** [first page index within the mapping, number of pages], in file order. */
  runs: z.array(z.tuple([z.number().int().nonnegative(), z.number().int().positive()])),
});

export const mappingSchema = z.strictObject({
  start: hex,
  end: hex,
  /** As in /proc/PID/maps: "r-xp", "rw-s". */
  perms: z.string().regex(/^[r-][w-][x-][ps]$/),
  offset: hex,
  kind: z.enum(MAPPING_KINDS),
  /** The path column of /proc/PID/maps, if any. */
  name: z.string().nullable(),
  file: backingFileSchema.optional(),
  pages: pagesSchema.optional(),
});

const sigactionSchema = z.strictObject({
  signal: z.number().int().min(1).max(64),
  handler: hex,
  flags: hex,
  restorer: hex,
  mask: hex,
});

const rlimitSchema = z.strictObject({
  resource: z.number().int().nonnegative(),
  soft: hex,
  hard: hex,
});

const registersSchema = z.strictObject({
  gpr: gprSchema,
  /** PTRACE_GETREGSET NT_X86_XSTATE as is (FPU, SSE, AVX, ... state). */
  xsave: base64,
  /** XCR0 of the dumping host (from the XSAVE software bytes): which state components the blob holds. */
  xfeatures: hex,
});

const rseqSchema = z.strictObject({ address: hex, size: z.number().int().positive(), signature: hex }).nullable();
const mmSchema = z.strictObject({
  startCode: hex, endCode: hex, startData: hex, endData: hex, startBrk: hex, brk: hex,
  startStack: hex, argStart: hex, argEnd: hex, envStart: hex, envEnd: hex,
  auxv: base64,
});
const hostSchema = z.strictObject({ release: z.string(), machine: z.literal('x86_64'), pageSize: z.literal(PAGE_SIZE) });

/** What every version records about a live process as a whole (not per thread). */
const taskFields = {
  comm: z.string(),
  exe: z.string(),
  cwd: z.string().startsWith('/'),
  umask: z.number().int().min(0).max(0o777),
  personality: hex,
  rlimits: z.array(rlimitSchema),
  mm: mmSchema,
};

/** What every version records about the jail the processes ran in. */
const jailFields = {
  createdAt: z.string(),
  host: hostSchema,
  /** The kernel-ABI profile the process ran under; restore re-derives its filter for the restoring host. */
  profile: z.string().min(1),
  /** The OCI seccomp policy file enforced as well (absolute path), if any. */
  policy: z.string().startsWith('/').nullable(),
  /** Syscalls answered by their shim even where the host has them (`--emulate`). */
  emulate: z.array(z.string()),
};

/** Version 1: one single-threaded process, restored with a new PID. */
const manifestV1Schema = z.strictObject({
  format: z.literal(IMAGE_MAGIC),
  version: z.literal(1),
  ...jailFields,
  process: z.strictObject({
    pid: z.number().int().positive(),
    ...taskFields,
    registers: registersSchema,
    signals: z.strictObject({
      blocked: hex,
      actions: z.array(sigactionSchema),
      /** Queued siginfo_t (128 bytes each, base64), per-thread and process-wide. */
      pending: z.array(z.strictObject({ shared: z.boolean(), siginfo: base64 })),
    }),
    rseq: rseqSchema,
    robustList: z.strictObject({ head: hex, length: hex }),
    clearChildTid: hex,
    mappings: z.array(mappingSchema).min(1),
  }),
});

/**
 * The process's vDSO as it was: its size, a digest of its bytes (to tell
 * whether this kernel's is the same) and its exported functions, as offsets
 * from its start. The bytes themselves are never saved.
 */
const vdsoSchema = z.strictObject({
  size: z.number().int().positive(),
  sha256,
  symbols: z.array(z.strictObject({ name: z.string().min(1), offset: z.number().int().nonnegative(), size: z.number().int().nonnegative() })),
});

/** CLOCK_MONOTONIC and CLOCK_BOOTTIME as the jail saw them at the checkpoint, in nanoseconds (decimal strings). */
const clocksSchema = z.strictObject({
  monotonic: z.string().regex(/^\d+$/),
  boottime: z.string().regex(/^\d+$/),
});

/**
 * The CPU features the image's processes may use. `flags`: instruction-set
 * flags (as /proc/cpuinfo names them) the restoring CPU must have: all the
 * dumping CPU's, or the x86-64 baseline for a jail run with --cpu-baseline.
 * `xfeatures`: XCR0 of the dumping CPU; `xstateUsed`: the XSAVE components
 * any thread had in use (the union of their XSTATE_BV); `xstate`: where each
 * component lies in the (standard format) XSAVE area, from CPUID leaf 0xD.
 */
const cpuSchema = z.strictObject({
  baseline: z.boolean(),
  flags: z.array(z.string()),
  xfeatures: hex,
  xstateUsed: hex,
  xstate: z.array(z.strictObject({ bit: z.number().int().min(2).max(63), offset: z.number().int().nonnegative(), size: z.number().int().positive() })),
});

const pid = z.number().int().positive();
/** A PID as seen inside the jail's PID namespace; 0 when it lies outside (inherited from vjail-init). */
const nsId = z.number().int().nonnegative();

/** One thread: what the kernel keeps per task rather than per process. */
export const threadSchema = z.strictObject({
  tid: pid,
  registers: registersSchema,
  /** This thread's blocked-signal mask. */
  blocked: hex,
  /** siginfo_t (128 bytes, base64) queued for this thread only. */
  pending: z.array(base64),
  rseq: rseqSchema,
  robustList: z.strictObject({ head: hex, length: hex }),
  clearChildTid: hex,
});

/**
 * A regular file or directory open at a descriptor above 2, reopened by its
 * path at restore. `flags` are the description's open flags as
 * /proc/PID/fdinfo shows them, without O_CLOEXEC (a property of the
 * descriptor: `cloexec`); `pos` is the file offset.
 */
const openFileSchema = z.strictObject({
  fd: z.number().int().min(3),
  path: z.string().startsWith('/'),
  kind: z.enum(['file', 'directory']),
  flags: z.number().int().nonnegative(),
  pos: hex,
  cloexec: z.boolean(),
});

const liveProcessSchema = z.strictObject({
  state: z.literal('live'),
  pid,
  /** 1 is the namespace's init (vjail-init, not in the image); 0 in an image without a PID namespace. */
  ppid: nsId,
  pgid: nsId,
  sid: nsId,
  ...taskFields,
  signals: z.strictObject({
    actions: z.array(sigactionSchema),
    /** siginfo_t queued for the whole process. */
    pending: z.array(base64),
  }),
  /** The thread group leader (tid = pid) first. */
  threads: z.array(threadSchema).min(1),
  mappings: z.array(mappingSchema).min(1),
  /** Null in images older than version 3. */
  vdso: vdsoSchema.nullable(),
  /** Empty in images older than version 4. */
  files: z.array(openFileSchema),
});

/** A child that has exited but was not reaped: only what its parent's wait() will see. */
const zombieSchema = z.strictObject({
  state: z.literal('zombie'),
  pid,
  ppid: nsId,
  pgid: nsId,
  sid: nsId,
  comm: z.string(),
  /** The wait status its parent will get (as waitpid reports it). */
  status: z.number().int().min(0).max(0xffff),
});

export const processSchema = z.discriminatedUnion('state', [liveProcessSchema, zombieSchema]);

export const manifestSchema = z.strictObject({
  format: z.literal(IMAGE_MAGIC),
  version: z.literal(IMAGE_VERSION),
  ...jailFields,
  /** Null in images older than version 3. */
  clocks: clocksSchema.nullable(),
  /** Null in images older than version 3. */
  cpu: cpuSchema.nullable(),
  /**
   * The jail had its own PID namespace (`vjail run --pid-ns`): every PID and
   * TID is restored as it was, in a new namespace whose PID 1 is a fresh
   * vjail-init. Without one, the image holds one single-threaded process,
   * restored with a new PID.
   */
  pidNamespace: z.boolean(),
  /** Parents before their children; the first is the jail's first process. */
  processes: z.array(processSchema).min(1),
});

export type Manifest = z.infer<typeof manifestSchema>;
export type ProcessImage = z.infer<typeof processSchema>;
export type LiveProcess = z.infer<typeof liveProcessSchema>;
export type ZombieProcess = z.infer<typeof zombieSchema>;
export type ThreadImage = z.infer<typeof threadSchema>;
export type Registers = z.infer<typeof registersSchema>;
export type Mapping = z.infer<typeof mappingSchema>;
export type Pages = z.infer<typeof pagesSchema>;
export type VdsoImage = z.infer<typeof vdsoSchema>;
export type OpenFile = z.infer<typeof openFileSchema>;
export type Clocks = z.infer<typeof clocksSchema>;
export type CpuImage = z.infer<typeof cpuSchema>;

export const toHex = (v: bigint | number): string => `0x${BigInt.asUintN(64, BigInt(v)).toString(16)}`;
export const fromHex = (s: string): bigint => BigInt(s);

/** Version 3: the same, without open files. */
const manifestV3Schema = manifestSchema.omit({ version: true }).extend({
  version: z.literal(3),
  processes: z.array(z.discriminatedUnion('state', [liveProcessSchema.omit({ files: true }), zombieSchema])).min(1),
});

function upgradeV3(m: z.infer<typeof manifestV3Schema>): Manifest {
  return { ...m, version: IMAGE_VERSION, processes: m.processes.map((p) => (p.state === 'live' ? { ...p, files: [] } : p)) };
}

/** Version 2: the same tree, without vDSO symbols, clocks, CPU features or open files. */
const manifestV2Schema = manifestSchema.omit({ version: true, clocks: true, cpu: true }).extend({
  version: z.literal(2),
  processes: z.array(z.discriminatedUnion('state', [liveProcessSchema.omit({ vdso: true, files: true }), zombieSchema])).min(1),
});

function upgradeV2(m: z.infer<typeof manifestV2Schema>): Manifest {
  return {
    ...m,
    version: IMAGE_VERSION,
    clocks: null,
    cpu: null,
    processes: m.processes.map((p) => (p.state === 'live' ? { ...p, vdso: null, files: [] } : p)),
  };
}

function header(manifestSha: string): string {
  return `${IMAGE_MAGIC} ${IMAGE_VERSION}\nmanifest sha256:${manifestSha}\n`;
}

/** A version 1 manifest in the current shape: one process, one thread, no PID namespace. */
function upgradeV1(m: z.infer<typeof manifestV1Schema>): Manifest {
  const { registers, signals, rseq, robustList, clearChildTid, mappings, ...task } = m.process;
  const queued = (shared: boolean): string[] => signals.pending.filter((q) => q.shared === shared).map((q) => q.siginfo);
  return {
    ...m,
    version: IMAGE_VERSION,
    clocks: null,
    cpu: null,
    pidNamespace: false,
    processes: [{
      state: 'live',
      ...task,
      ppid: 0,
      pgid: 0,
      sid: 0,
      signals: { actions: signals.actions, pending: queued(true) },
      threads: [{ tid: task.pid, registers, blocked: signals.blocked, pending: queued(false), rseq, robustList, clearChildTid }],
      mappings,
      vdso: null,
      files: [],
    }],
  };
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

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * sha256 on a worker thread, so that hashing page data overlaps with reading
 * and writing it on this one. Updates are queued in order; `digest` waits
 * (Atomics.wait) until the worker has hashed everything queued before it.
 */
const HASHER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
parentPort.on('message', (m) => {
  let h = hashes.get(m.id);
  if (!h) hashes.set(m.id, (h = createHash('sha256')));
  if (m.data) {
    h.update(new Uint8Array(m.data, m.off, m.len));
    Atomics.add(m.done, 0, 1);
    Atomics.notify(m.done, 0);
    return;
  }
  hashes.delete(m.id);
  const out = new Uint8Array(m.result.buffer);
  out.set(h.digest(), 4);
  Atomics.store(m.result, 0, 1);
  Atomics.notify(m.result, 0);
});
`;

let hasherWorker: Worker | undefined;
let hashIds = 0;
/** Updates handed to the worker, and (shared with it) how many it has finished. */
let posted = 0;
const finished = new Int32Array(new SharedArrayBuffer(4));
/** Updates handed to the worker and not hashed yet, at most: beyond it, `update` waits. */
const HASH_BACKLOG = 8;

function hasher(): Worker {
  if (!hasherWorker) {
    hasherWorker = new Worker(HASHER_SOURCE, { eval: true });
    hasherWorker.unref();
  }
  return hasherWorker;
}

/** Wait until the worker has finished update number `n` (counted from 1). */
function waitFinished(n: number): void {
  for (;;) {
    const have = Atomics.load(finished, 0);
    if (have >= n) return;
    Atomics.wait(finished, 0, have);
  }
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
    hasher().postMessage({ id: this.id, data: ab, off, len: data.length, done: finished }, slot ? [] : [ab as ArrayBuffer]);
  }

  digest(): string {
    const result = new Int32Array(new SharedArrayBuffer(4 + 32));
    hasher().postMessage({ id: this.id, result });
    while (Atomics.load(result, 0) === 0) Atomics.wait(result, 0, 0);
    return Buffer.from(result.buffer, 4, 32).toString('hex');
  }
}

interface WritebackAddon {
  /** sync_file_range(SYNC_FILE_RANGE_WRITE): start writeback of the range, without waiting for it. */
  syncFileRange(fd: number, offset: number, length: number): void;
}

/**
 * Start writing a range just written back to disk, so that the fsync at the
 * end of the file waits only for the last few chunks. Only a head start:
 * where the file system refuses, the fsync does all of it, as before.
 */
function startWriteback(fd: number, offset: number, length: number): void {
  try {
    (native() as unknown as WritebackAddon).syncFileRange(fd, offset, length);
  } catch {
    // The fsync in `close` still makes the data durable.
  }
}

/**
 * One page-data file being written. Each buffer is written, then hashed (on
 * the worker thread): the digest is of exactly the bytes handed to write(2).
 */
export class PageFileWriter {
  private readonly fd: number;
  private readonly hash = new OffThreadHash();
  private size = 0;
  readonly runs: [number, number][] = [];

  constructor(
    readonly name: string,
    path: string,
  ) {
    this.fd = openSync(path, 'wx', 0o600);
  }

  /** Append the pages [firstPage, firstPage + data.length / PAGE_SIZE) of the mapping; `data` is given up. */
  append(firstPage: number, data: Buffer): void {
    const count = data.length / PAGE_SIZE;
    const last = this.runs.at(-1);
    if (last && last[0] + last[1] === firstPage) last[1] += count;
    else this.runs.push([firstPage, count]);
    for (let off = 0; off < data.length; ) off += writeSync(this.fd, data, off, data.length - off);
    startWriteback(this.fd, this.size, data.length);
    this.size += data.length;
    this.hash.update(data);
  }

  close(): Pages {
    fsyncSync(this.fd);
    closeSync(this.fd);
    return { file: this.name, size: this.size, sha256: this.hash.digest(), runs: this.runs };
  }
}

/**
 * Writes an image under a temporary name beside its destination; `commit`
 * publishes it by rename, `abort` removes every trace of it.
 */
export class ImageWriter {
  readonly tmpDir: string;
  private pageFiles = 0;

  constructor(readonly dir: string) {
    if (existsSync(dir)) throw new ImageError(`${dir} already exists; choose a new image directory`);
    const parent = dirname(dir);
    if (!existsSync(parent)) throw new ImageError(`cannot write the image: ${parent} does not exist`);
    this.tmpDir = join(parent, `.${basename(dir)}.partial-${process.pid}`);
    rmSync(this.tmpDir, { recursive: true, force: true });
    mkdirSync(this.tmpDir, { mode: 0o700 });
  }

  pageFile(): PageFileWriter {
    const name = `pages-${this.pageFiles++}.img`;
    return new PageFileWriter(name, join(this.tmpDir, name));
  }

  /** Validate the manifest, write it and IMAGE, fsync, verify, and rename into place. */
  commit(manifest: Manifest): void {
    const checked = manifestSchema.safeParse(manifest);
    if (!checked.success) throw new ImageError(`internal: the manifest does not match its schema: ${describeIssue(checked.error)}`);
    const text = `${JSON.stringify(checked.data, null, 1)}\n`;
    const sha = createHash('sha256').update(text).digest('hex');
    writeFileSynced(join(this.tmpDir, MANIFEST_FILE), text);
    writeFileSynced(join(this.tmpDir, HEADER_FILE), header(sha));
    fsyncPath(this.tmpDir);
    // Read back the header and manifest and check them, and every page file's size; the page
    // files' sha256 are of the bytes written to them, which fsync has made durable (docs/IMAGE.md).
    openImage(this.tmpDir, { verifyPages: false });
    if (existsSync(this.dir)) throw new ImageError(`${this.dir} appeared while the image was written; it was left untouched`);
    renameSync(this.tmpDir, this.dir);
    fsyncPath(dirname(this.dir));
  }

  abort(): void {
    rmSync(this.tmpDir, { recursive: true, force: true });
  }
}

function writeFileSynced(path: string, text: string): void {
  const fd = openSync(path, 'wx', 0o600);
  try {
    const data = Buffer.from(text);
    for (let off = 0; off < data.length; ) off += writeSync(fd, data, off, data.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function describeIssue(err: z.ZodError): string {
  const issue = err.issues[0];
  if (!issue) return 'invalid';
  return `${issue.path.join('.') || '(top)'}: ${issue.message}`;
}

/** sha256 of a file, streamed. */
export function sha256File(path: string): string {
  const hash = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
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
  const parse = <T>(schema: z.ZodType<T>): T => {
    const parsed = schema.safeParse(json);
    if (!parsed.success) throw new ImageError(`${dir} has an invalid manifest: ${describeIssue(parsed.error)}`);
    return parsed.data;
  };
  const manifest = version === 1 ? upgradeV1(parse(manifestV1Schema))
    : version === 2 ? upgradeV2(parse(manifestV2Schema))
      : version === 3 ? upgradeV3(parse(manifestV3Schema))
        : parse(manifestSchema);
  const problem = treeProblem(manifest);
  if (problem) throw new ImageError(`${dir} has an invalid manifest: ${problem}`);
  for (const p of manifest.processes) {
    if (p.state !== 'live') continue;
    for (const [i, map] of p.mappings.entries()) checkMapping(dir, i, map, opts.verifyPages ?? true);
  }
  return { dir, version, manifest };
}

function checkMapping(dir: string, i: number, map: Mapping, verifyPages: boolean): void {
  const start = fromHex(map.start);
  const end = fromHex(map.end);
  const pageSize = BigInt(PAGE_SIZE);
  if (end <= start || start % pageSize || end % pageSize) {
    throw new ImageError(`${dir} has an invalid manifest: mapping ${i} (${map.start}-${map.end}) is not page-aligned`);
  }
  if (!map.pages) return;
  const pages = Number((end - start) / pageSize);
  let total = 0;
  for (const [first, count] of map.pages.runs) {
    if (first + count > pages) throw new ImageError(`${dir} has an invalid manifest: mapping ${i} has pages beyond its end`);
    total += count;
  }
  const path = join(dir, map.pages.file);
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    throw new ImageError(`${dir} is damaged: ${map.pages.file} is missing`);
  }
  if (size !== map.pages.size || total * PAGE_SIZE !== size) {
    throw new ImageError(`${dir} is damaged: ${map.pages.file} is ${size} bytes, the manifest says ${map.pages.size}`);
  }
  if (verifyPages && sha256File(path) !== map.pages.sha256) {
    throw new ImageError(`${dir} is damaged: ${map.pages.file} does not match its checksum`);
  }
}

/** Path of a page-data file of an opened image. */
export function pagesPath(image: OpenedImage, pages: Pages): string {
  return join(image.dir, pages.file);
}
