/**
 * The image's schema: what an image directory holds, field by field (the
 * `.proto` of vjail). Only data definitions live here; reading, writing and
 * upgrading older versions are beside it (read.ts, write.ts, upgrade.ts).
 *
 *   DIR/IMAGE          "vjail-image <version>\nmanifest sha256:<hex>\n"
 *   DIR/manifest.json  the processes, validated by `manifestSchema`
 *   DIR/pages-<n>.img  raw page data of one mapping, runs back to back
 *
 * docs/IMAGE.md describes every version.
 */
import { z } from 'zod';

/**
 * For a command that validates a few documents and exits: zod compiles a
 * fast path for each object schema the first time it parses one, which pays
 * off only over many parses. Without it a manifest of 1000 descriptors
 * validates in about half the time in a fresh process (this 2-vCPU host:
 * 47-82 ms against 115-185 ms). Global to zod; the CLI's checkpoint, restore
 * and migrate commands set it, a long-lived library user does not. zod reads
 * it when a schema is made, before this is called: parseManifest passes it
 * to each parse.
 */
export function validateWithoutCompiling(): void {
  z.config({ jitless: true });
}

export const IMAGE_MAGIC = 'vjail-image';
export const IMAGE_VERSION = 8;
/** Versions `openImage` reads. */
export const READABLE_VERSIONS = [1, 2, 3, 4, 5, 6, 7, 8] as const;
export const PAGE_SIZE = 4096;
export const HEADER_FILE = 'IMAGE';
export const MANIFEST_FILE = 'manifest.json';
/** The largest manifest written or read: a reader bounds what it parses (docs/IMAGE.md). */
export const MANIFEST_MAX_BYTES = 64 << 20;
/** The largest IMAGE header read (its two lines are about 100 bytes). */
export const HEADER_MAX_BYTES = 4096;
/** Bounds on a manifest's counts, checked before anything else reads it: beyond what one jail holds, short of what would stall a reader. */
export const MAX_PROCESSES = 8192;
export const MAX_THREADS = 8192;
/** vm.max_map_count's default. */
export const MAX_MAPPINGS = 65530;

/** A 64-bit value as lowercase hex ("0x7ffd1000"): JSON numbers cannot hold addresses exactly. */
export const hex = z.string().regex(/^0x[0-9a-f]+$/, 'must be lowercase hex such as 0x1000');
export const sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'must be a sha256 hex digest');
export const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64');

export const GPR_NAMES = [
  'r15', 'r14', 'r13', 'r12', 'rbp', 'rbx', 'r11', 'r10', 'r9', 'r8', 'rax', 'rcx', 'rdx', 'rsi', 'rdi',
  'orig_rax', 'rip', 'cs', 'eflags', 'rsp', 'ss', 'fs_base', 'gs_base', 'ds', 'es', 'fs', 'gs',
] as const;
export type GprName = (typeof GPR_NAMES)[number];

export const gprSchema = z.strictObject(Object.fromEntries(GPR_NAMES.map((n) => [n, hex])) as Record<GprName, typeof hex>);

/** What a mapping is, from /proc/PID/maps' path column. */
export const MAPPING_KINDS = ['anon', 'file', 'heap', 'stack', 'vdso', 'vvar', 'vvar_vclock', 'vsyscall', 'object'] as const;

export const backingFileSchema = z.strictObject({
  path: z.string().startsWith('/'),
  size: z.number().int().nonnegative(),
  mtimeMs: z.number(),
  sha256,
});

/**
 * An array of many small values of one shape (a page file's runs, its chunk
 * digests: 16384 of them for 1 GiB in 64 KiB chunks), checked by one loop:
 * a zod schema per element made opening such an image several times slower
 * (about 100 ms of a fresh process at 1 GiB), inside the time a migrated
 * jail is stopped. The first bad element is refused, by its index, with
 * `message`; the array is kept as it is (nothing is copied).
 */
function listOf<T>(message: string, ok: (v: unknown) => boolean) {
  return z.custom<T[]>().superRefine((v, ctx) => {
    if (!Array.isArray(v)) {
      ctx.addIssue({ code: 'custom', message: `must be an array; each element ${message}` });
      return;
    }
    refineEach(v, message, ok, ctx);
  });
}

/** Refuse the first element of `v` that is not `ok`, by its index, with `message`. */
function refineEach(v: unknown[], message: string, ok: (v: unknown) => boolean, ctx: z.RefinementCtx): void {
  for (let i = 0; i < v.length; i++) {
    if (!ok(v[i])) {
      ctx.addIssue({ code: 'custom', message, path: [i] });
      return;
    }
  }
}
const SHA256 = /^[0-9a-f]{64}$/;
const HEX_DIGITS = /^[0-9a-f]*$/;

/**
 * A page file's chunk digests, read as one string of 64 hex digits per
 * chunk, in order. Version 7 writes them so: one JSON string parses and
 * checks in a few milliseconds where 16384 of them (1 GiB in 64 KiB chunks)
 * took tens, inside the time a migrated jail is stopped. Versions 5 and 6
 * wrote a list of digests, which is checked one by one and joined.
 */
const chunkDigests = z
  .custom<string | string[]>()
  .superRefine((v, ctx) => {
    if (typeof v === 'string') {
      if (v.length === 0 || v.length % 64 !== 0 || !HEX_DIGITS.test(v)) {
        ctx.addIssue({ code: 'custom', message: 'must be sha256 digests in lowercase hex, 64 digits each, one after another' });
      }
      return;
    }
    if (!Array.isArray(v)) {
      ctx.addIssue({ code: 'custom', message: 'must be a string of sha256 hex digests' });
      return;
    }
    refineEach(v, 'must be a sha256 hex digest', isSha256, ctx);
  })
  .transform((v): string => (typeof v === 'string' ? v : v.join('')));

const isSha256 = (v: unknown): boolean => typeof v === 'string' && SHA256.test(v);
/** What z.tuple([z.number().int().nonnegative(), z.number().int().positive()]) takes (zod's int() is a safe integer). */
const isRun = (v: unknown): boolean =>
  Array.isArray(v) && v.length === 2 && Number.isSafeInteger(v[0]) && (v[0] as number) >= 0 && Number.isSafeInteger(v[1]) && (v[1] as number) > 0;

export const pagesSchema = z.strictObject({
  file: z.string().regex(/^pages-\d+\.img$/),
  size: z.number().int().nonnegative(),
  /**
   * Since version 6, the sha256 of the chunk digests (`chunks`, 32 bytes
   * each, in order), which every such file has: each byte is hashed once,
   * per chunk, and the chunks can be checked one by one. Before, the sha256
   * of the file's bytes.
   */
  sha256,
  /** [first page index within the mapping, number of pages], in file order. */
  runs: listOf<[number, number]>('must be [first page, count]: integers, the first at least 0, the count at least 1', isRun),
  /**
   * Version 5: the sha256 of every `size` bytes of the file (the last piece
   * may be shorter), so that a lazy restore checks each piece before placing
   * it; one string of them since version 7 (`chunkDigests`). Since version 8
   * they are not in the manifest but in CHUNK_SUMS_FILE at `offset`, 32 bytes
   * each, in order, one page file's after another's: the manifest of a
   * migrated 1 GiB jail was 1 MB of them, parsed and checked while the jail
   * was stopped. The page file's `sha256` is of them, so the manifest's
   * checksum covers them. Absent in images before version 5: a lazy restore
   * hashes such a file whole first.
   */
  chunks: z
    .strictObject({ size: z.number().int().positive().multipleOf(PAGE_SIZE), sha256: chunkDigests.optional(), offset: z.number().int().nonnegative().optional() })
    .refine((c) => (c.sha256 === undefined) !== (c.offset === undefined), 'must have either the offset of its digests in sums.img (version 8) or the digests (versions 5 to 7)')
    .optional(),
});
/** Version 8: the file holding every page file's chunk digests (`chunks.offset`), back to back. */
export const CHUNK_SUMS_FILE = 'sums.img';
/** The most CHUNK_SUMS_FILE may hold (a reader reads it whole): 32 bytes a chunk, 2 TiB of page data in the 256 KiB chunks a checkpoint writes. */
export const CHUNK_SUMS_MAX_BYTES = 256 << 20;
/** The piece of a page file that has a sha256 of its own (`chunks`): what a lazy restore reads and checks on a fault. */
export const PAGE_CHUNK_BYTES = 256 << 10;

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
  /** Kind `object`: the id of the shared-memory object it maps (`sharedMemory` of the manifest). */
  object: z.number().int().nonnegative().optional(),
  /** Pages of its own: of a private mapping, those written to (no longer the object's or file's). */
  pages: pagesSchema.optional(),
});

const objectFields = {
  /** Unique in the image; mappings (and descriptors) name the object by it. */
  id: z.number().int().nonnegative(),
  /** Its size in bytes (the file's size). */
  size: z.number().int().nonnegative(),
  /** Its data, once for every process and mapping; runs are [page index within the object, count]. */
  pages: pagesSchema.optional(),
};
const ipcOwner = {
  /** Permission bits (0o777). */
  mode: z.number().int().min(0).max(0o777),
  uid: z.number().int().nonnegative(),
  gid: z.number().int().nonnegative(),
  cuid: z.number().int().nonnegative(),
  cgid: z.number().int().nonnegative(),
};

/**
 * Memory that mappings of several processes (or several mappings of one)
 * share: one shmem inode or deleted file. `anon`: MAP_SHARED|MAP_ANONYMOUS;
 * `memfd`: memfd_create's (name without "memfd:", seals as F_GET_SEALS);
 * `file`: a file on tmpfs mapped shared (POSIX shm in /dev/shm), or a
 * deleted file (`deleted`: re-created unlinked); `sysv`: a System V shared
 * memory segment of the jail's IPC namespace (`removed`: IPC_RMID was done,
 * it lives until its last detach).
 */
export const sharedObjectSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('anon'), ...objectFields }),
  z.strictObject({ kind: z.literal('memfd'), ...objectFields, name: z.string(), seals: z.number().int().nonnegative() }),
  z.strictObject({
    kind: z.literal('file'), ...objectFields, path: z.string().startsWith('/'), deleted: z.boolean(),
    mode: z.number().int().min(0).max(0o7777), uid: z.number().int().nonnegative(), gid: z.number().int().nonnegative(),
  }),
  z.strictObject({ kind: z.literal('sysv'), ...objectFields, shmid: z.number().int().nonnegative(), key: z.number().int(), ...ipcOwner, removed: z.boolean() }),
]);

/** System V semaphore sets and message queues of the jail's own IPC namespace, with their ids and keys. */
export const sysvIpcSchema = z.strictObject({
  semaphores: z.array(z.strictObject({ id: z.number().int().nonnegative(), key: z.number().int(), ...ipcOwner, values: z.array(z.number().int().min(0).max(0xffff)).min(1) })),
  queues: z.array(z.strictObject({
    id: z.number().int().nonnegative(), key: z.number().int(), ...ipcOwner,
    /** msg_qbytes: the most bytes the queue holds. */
    maxBytes: z.number().int().nonnegative(),
    /** In queue order. */
    messages: z.array(z.strictObject({ type: z.number().int().positive(), data: base64 })),
  })),
});

export const sigactionSchema = z.strictObject({
  signal: z.number().int().min(1).max(64),
  handler: hex,
  flags: hex,
  restorer: hex,
  mask: hex,
});

export const rlimitSchema = z.strictObject({
  resource: z.number().int().nonnegative(),
  soft: hex,
  hard: hex,
});

export const registersSchema = z.strictObject({
  gpr: gprSchema,
  /** PTRACE_GETREGSET NT_X86_XSTATE as is (FPU, SSE, AVX, ... state). */
  xsave: base64,
  /** XCR0 of the dumping host (from the XSAVE software bytes): which state components the blob holds. */
  xfeatures: hex,
});

export const rseqSchema = z.strictObject({ address: hex, size: z.number().int().positive(), signature: hex }).nullable();
export const mmSchema = z.strictObject({
  startCode: hex, endCode: hex, startData: hex, endData: hex, startBrk: hex, brk: hex,
  startStack: hex, argStart: hex, argEnd: hex, envStart: hex, envEnd: hex,
  auxv: base64,
});
export const hostSchema = z.strictObject({ release: z.string(), machine: z.literal('x86_64'), pageSize: z.literal(PAGE_SIZE) });

/** What every version records about a live process as a whole (not per thread). */
export const taskFields = {
  comm: z.string(),
  exe: z.string(),
  cwd: z.string().startsWith('/'),
  umask: z.number().int().min(0).max(0o777),
  personality: hex,
  rlimits: z.array(rlimitSchema),
  mm: mmSchema,
};

/** What every version records about the jail the processes ran in. */
export const jailFields = {
  createdAt: z.string(),
  host: hostSchema,
  /** The kernel-ABI profile the process ran under; restore re-derives its filter for the restoring host. */
  profile: z.string().min(1),
  /** The OCI seccomp policy file enforced as well (absolute path), if any. */
  policy: z.string().startsWith('/').nullable(),
  /** Syscalls answered by their shim even where the host has them (`--emulate`). */
  emulate: z.array(z.string()),
};

/**
 * The process's vDSO as it was: its size, a digest of its bytes (to tell
 * whether this kernel's is the same) and its exported functions, as offsets
 * from its start. The bytes themselves are never saved.
 */
export const vdsoSchema = z.strictObject({
  size: z.number().int().positive(),
  sha256,
  symbols: z.array(z.strictObject({ name: z.string().min(1), offset: z.number().int().nonnegative(), size: z.number().int().nonnegative() })),
});

/** CLOCK_MONOTONIC and CLOCK_BOOTTIME as the jail saw them at the checkpoint, in nanoseconds (decimal strings). */
export const clocksSchema = z.strictObject({
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
export const cpuSchema = z.strictObject({
  baseline: z.boolean(),
  flags: z.array(z.string()),
  xfeatures: hex,
  xstateUsed: hex,
  xstate: z.array(z.strictObject({ bit: z.number().int().min(2).max(63), offset: z.number().int().nonnegative(), size: z.number().int().positive() })),
});


const pid = z.number().int().positive();
/** A PID as seen inside the jail's PID namespace; 0 when it lies outside (inherited from vjail-init). */
const nsId = z.number().int().nonnegative();
const nsIdSchema = nsId;

/** Decimal nanoseconds or microseconds: beyond what a JSON number holds exactly. */
const decimal = z.string().regex(/^\d+$/);

/**
 * A thread's credentials (/proc/PID/task/TID/status, securebits by
 * PR_GET_SECUREBITS): [real, effective, saved, filesystem] IDs, capability
 * sets as hex masks, `loginuid` null when unset (4294967295).
 */
export const credsSchema = z.strictObject({
  uids: z.tuple([z.number().int(), z.number().int(), z.number().int(), z.number().int()]),
  gids: z.tuple([z.number().int(), z.number().int(), z.number().int(), z.number().int()]),
  groups: z.array(z.number().int().nonnegative()),
  caps: z.strictObject({ inheritable: hex, permitted: hex, effective: hex, bounding: hex, ambient: hex }),
  securebits: z.number().int().nonnegative(),
  noNewPrivs: z.boolean(),
  loginuid: z.number().int().nonnegative().nullable(),
});

/** Per-thread state added in version 5 (parts/threads.ts, parts/creds.ts). */
export const threadStateFields = {
  /** PR_GET_NAME of the thread; null in older images (the leader's is the process's `comm`). */
  comm: z.string().nullable(),
  /** PR_GET_PDEATHSIG; 0 in older images. */
  pdeathsig: z.number().int().min(0).max(64),
  /** PR_GET_TIMERSLACK in ns; null in older images (left as the restorer's). */
  timerSlack: decimal.nullable(),
  /** Null in older images: the restorer's (vjail's) credentials. */
  creds: credsSchema.nullable(),
};

/**
 * Timers of a process (parts/timers.ts). `itimers`: the setitimer timers
 * with a value or an interval, in microseconds. `posix`: timer_create timers by ID; `tid` is the
 * thread (as the jail sees it) a SIGEV_THREAD_ID timer signals; `remaining`
 * and `interval` in ns from timer_gettime; `expiry` the absolute expiry (ns)
 * of an armed timer on a wall clock (REALTIME, TAI, REALTIME_ALARM), which
 * restore keeps; null for the others, which keep their remaining time.
 */
export const timersSchema = z.strictObject({
  itimers: z.array(z.strictObject({ which: z.enum(['real', 'virtual', 'prof']), value: decimal, interval: decimal })),
  posix: z.array(z.strictObject({
    id: z.number().int().nonnegative(),
    /** As passed to timer_create; negative: a CPU-time clock (clock_getcpuclockid's encoding). */
    clock: z.number().int(),
    /** sigev_notify: SIGEV_SIGNAL 0, SIGEV_NONE 1, SIGEV_THREAD 2, | SIGEV_THREAD_ID 4. */
    notify: z.number().int().min(0).max(7),
    signal: z.number().int().min(0).max(64),
    value: hex,
    tid: nsIdSchema,
    remaining: decimal,
    interval: decimal,
    expiry: decimal.nullable(),
    overrun: z.number().int().nonnegative(),
  })),
});

/** Advice on a range of memory, from /proc/PID/smaps VmFlags (parts/advice.ts). */
export const ADVICE = ['dontfork', 'dontdump', 'wipeonfork', 'hugepage', 'nohugepage', 'locked', 'lockonfault'] as const;
export const adviceSchema = z.strictObject({ start: hex, end: hex, advice: z.array(z.enum(ADVICE)).min(1) });

/** Process-wide prctl state (parts/task.ts). */
export const prctlSchema = z.strictObject({
  dumpable: z.number().int().min(0).max(1),
  childSubreaper: z.boolean(),
  thpDisable: z.boolean(),
});

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
  ...threadStateFields,
});

/**
 * Version 4's record of a regular file or directory open at a descriptor
 * above 2 (upgrade.ts turns it into a description and a descriptor).
 */
export const openFileSchema = z.strictObject({
  fd: z.number().int().min(3),
  path: z.string().startsWith('/'),
  kind: z.enum(['file', 'directory']),
  flags: z.number().int().nonnegative(),
  pos: hex,
  cloexec: z.boolean(),
});

/**
 * Bytes an image holds besides page data (a pipe's queued bytes, a socket's
 * queue, a deleted file's contents), checked like a page file before
 * anything is restored. Before version 6 each was a file, DIR/<file>; since
 * version 6 they lie back to back in one file, DIR/blobs.img, `offset`
 * bytes in, and `file` only names the blob (what pipes and sockets refer
 * to): one file to write and fsync however many there are.
 */
export const blobSchema = z.strictObject({
  file: z.string().regex(/^blob-\d+\.img$/),
  size: z.number().int().nonnegative(),
  sha256,
  offset: z.number().int().nonnegative().optional(),
});
/** Version 6: the file holding every blob (`offset`). */
export const BLOB_PACK_FILE = 'blobs.img';
const blobName = z.string().regex(/^blob-\d+\.img$/);

/**
 * A file whose contents the image holds (a memfd, a file deleted while
 * open): `id` ("DEV:INO" at the checkpoint) is the same for every description
 * of one file, which restore makes once; a shared mapping of it can name it too.
 */
export const savedFileSchema = z.strictObject({
  id: z.string().regex(/^\d+:\d+$/),
  size: z.number().int().nonnegative(),
  /** Its bytes up to `size`, or null when it was empty. */
  data: blobName.nullable(),
  mode: z.number().int().min(0).max(0o7777),
});

/**
 * Open file descriptions (what descriptors point at), each saved once and
 * shared by every descriptor that shared it, in any process: `id` is what
 * descriptors name. `flags` are its status flags as /proc/PID/fdinfo shows
 * them, without O_CLOEXEC (a property of each descriptor). One schema entry
 * per kind; each kind has one collector and one restorer in
 * src/checkpoint/parts/fds/.
 */
const description = { id: z.number().int().nonnegative(), flags: z.number().int().nonnegative() };
export const DESCRIPTION_KINDS = {
  /** A file reopened by its path: regular files, directories, and O_PATH descriptors of anything. */
  file: z.strictObject({ kind: z.literal('file'), ...description, path: z.string().startsWith('/'), type: z.enum(['file', 'directory', 'other']), pos: hex }),
  /** The jail's own standard stream (its terminal, or its log file): the restoring side's stream `stream`. */
  stdio: z.strictObject({ kind: z.literal('stdio'), ...description, stream: z.number().int().min(0).max(2), what: z.enum(['terminal', 'file', 'pipe']) }),
  /** One end of a pipe; the pipe itself (capacity, queued bytes) is in the manifest's `pipes`. */
  pipe: z.strictObject({ kind: z.literal('pipe'), ...description, pipe: z.string().regex(/^\d+$/), end: z.enum(['read', 'write']) }),
  /** A FIFO reopened by its path; its queued bytes are in `pipes` under the FIFO's inode. */
  fifo: z.strictObject({ kind: z.literal('fifo'), ...description, path: z.string().startsWith('/'), pipe: z.string().regex(/^\d+$/) }),
  /** An eventfd: its counter and whether it counts as a semaphore. */
  eventfd: z.strictObject({ kind: z.literal('eventfd'), ...description, count: hex, semaphore: z.boolean() }),
  /** A well-known character device (/dev/null, /dev/zero, /dev/urandom, ...) reopened by its path. */
  chardev: z.strictObject({ kind: z.literal('chardev'), ...description, path: z.string().startsWith('/'), rdev: z.string().regex(/^\d+:\d+$/) }),
  /** A memfd: its name, contents, seals and creation flags (parts/fds/filedata.ts keeps the contents). */
  memfd: z.strictObject({
    kind: z.literal('memfd'), ...description, name: z.string(), file: savedFileSchema, pos: hex,
    /** F_GET_SEALS; `sealing`: made with MFD_ALLOW_SEALING (else F_SEAL_SEAL stands from the start). */
    seals: z.number().int().nonnegative(), sealing: z.boolean(), hugetlb: z.boolean(),
  }),
  /** A regular file deleted while open: its contents, made again unlinked (in its old directory if there is one). */
  deleted: z.strictObject({ kind: z.literal('deleted'), ...description, path: z.string().startsWith('/'), file: savedFileSchema, pos: hex }),
  /** A signalfd: the signals it takes. */
  signalfd: z.strictObject({ kind: z.literal('signalfd'), ...description, mask: hex }),
  /**
   * A timerfd. `remaining`/`interval` in ns (0 remaining: disarmed); `deadline`: for an
   * absolute (TFD_TIMER_ABSTIME) timer, its expiry in ns on the jail's own clock; `ticks`:
   * expirations counted and not yet read.
   */
  timerfd: z.strictObject({
    kind: z.literal('timerfd'), ...description, clock: z.number().int().nonnegative(), abstime: z.boolean(), cancelOnSet: z.boolean(),
    remaining: hex, interval: hex, deadline: hex.nullable(), ticks: hex,
  }),
  /** An epoll instance: its interest list, each watch by the fd number its holders know the target by. */
  epoll: z.strictObject({
    kind: z.literal('epoll'), ...description,
    watches: z.array(z.strictObject({
      fd: z.number().int().nonnegative(),
      /** The description watched (a process holding the epoll holds it at `fd`). */
      target: z.number().int().nonnegative(),
      events: z.number().int().nonnegative(),
      data: hex,
    })),
  }),
  /** An inotify instance: its watches by watch descriptor, path (as the jail sees it) and mask. */
  inotify: z.strictObject({
    kind: z.literal('inotify'), ...description,
    watches: z.array(z.strictObject({ wd: z.number().int().positive(), path: z.string().startsWith('/'), mask: z.number().int().nonnegative(), symlink: z.boolean() })),
  }),
  /** A pidfd of a process of the jail, by its PID in the image. */
  pidfd: z.strictObject({ kind: z.literal('pidfd'), ...description, pid }),
  /**
   * A unix socket. `ino` is its inode at the checkpoint (what `peer` and a
   * listener's `pending` name); `name` its address as sun_path held it, in
   * hex (a leading 00: abstract), null when unnamed. Its receive queue is in
   * `queue` (a blob), cut into `messages` for datagram kinds.
   */
  unix: z.strictObject({
    kind: z.literal('unix'), ...description,
    ino: z.string().regex(/^\d+$/),
    type: z.enum(['stream', 'dgram', 'seqpacket']),
    state: z.enum(['unconnected', 'listening', 'connected']),
    name: z.string().regex(/^([0-9a-f]{2})+$/).nullable(),
    /** The peer's inode (another unix description of the image), or null: none, or (connected) closed. */
    peer: z.string().regex(/^\d+$/).nullable(),
    /** A listener's backlog and its connections not yet accepted (their clients' inodes), in queue order. */
    backlog: z.number().int().nonnegative().nullable(),
    pending: z.array(z.string().regex(/^\d+$/)),
    /** shutdown(2) of its sending side (SHUT_WR) was called. */
    shutWrite: z.boolean(),
    queue: blobName.nullable(),
    /** Datagram kinds: each queued message's size and who sent it (the peer, or an unnamed socket). */
    messages: z.array(z.strictObject({ size: z.number().int().nonnegative(), from: z.enum(['peer', 'unnamed']) })),
    options: z.record(z.string(), z.number().int()),
    /** For a path name: the socket file's mode, owner and group, set again after bind. */
    file: z.strictObject({ mode: z.number().int(), uid: z.number().int(), gid: z.number().int() }).nullable(),
  }),
  /**
   * A TCP or UDP socket not in an established TCP connection: unbound,
   * bound, listening (TCP), connected (UDP); addresses as "ADDR" and port.
   */
  inet: z.strictObject({
    kind: z.literal('inet'), ...description,
    family: z.enum(['ipv4', 'ipv6']),
    protocol: z.enum(['tcp', 'udp']),
    state: z.enum(['unbound', 'bound', 'listening', 'connected']),
    local: z.strictObject({ addr: z.string(), port: z.number().int().min(0).max(65535) }).nullable(),
    remote: z.strictObject({ addr: z.string(), port: z.number().int().min(0).max(65535) }).nullable(),
    backlog: z.number().int().nonnegative().nullable(),
    options: z.record(z.string(), z.number().int()),
  }),
  /**
   * An established TCP connection, saved in repair mode (`vjail checkpoint
   * --tcp-established`): sequence numbers, both queues, negotiated options
   * and window, made again with TCP_REPAIR.
   */
  tcp: z.strictObject({
    kind: z.literal('tcp'), ...description,
    family: z.enum(['ipv4', 'ipv6']),
    local: z.strictObject({ addr: z.string(), port: z.number().int().min(0).max(65535) }),
    remote: z.strictObject({ addr: z.string(), port: z.number().int().min(0).max(65535) }),
    sendSeq: z.number().int().nonnegative(),
    recvSeq: z.number().int().nonnegative(),
    /** Bytes sent but not acknowledged plus not yet sent, and bytes received not yet read. */
    sendQueue: blobName.nullable(),
    /** Of the send queue, how many bytes were not yet sent. */
    unsent: z.number().int().nonnegative(),
    recvQueue: blobName.nullable(),
    mss: z.number().int().nonnegative(),
    /** Negotiated window scales (null: not negotiated), SACK, timestamps. */
    sndWscale: z.number().int().nullable(),
    rcvWscale: z.number().int().nullable(),
    sack: z.boolean(),
    timestamps: z.boolean(),
    /** TCP_TIMESTAMP at the checkpoint (the connection's clock). */
    timestamp: z.number().int().nonnegative(),
    /** TCP_REPAIR_WINDOW: snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup. */
    window: z.array(z.number().int().nonnegative()).length(5),
    options: z.record(z.string(), z.number().int()),
  }),
  /**
   * State the image could not hold (saved under `vjail checkpoint --external warn`):
   * restore needs `--inherit-fd N:KEY` to stand in for it.
   */
  external: z.strictObject({ kind: z.literal('external'), ...description, key: z.string().min(1), reason: z.string() }),
} as const;
export const descriptionSchema = z.discriminatedUnion('kind', [
  DESCRIPTION_KINDS.file, DESCRIPTION_KINDS.stdio, DESCRIPTION_KINDS.pipe, DESCRIPTION_KINDS.fifo,
  DESCRIPTION_KINDS.eventfd, DESCRIPTION_KINDS.chardev, DESCRIPTION_KINDS.external,
  DESCRIPTION_KINDS.memfd, DESCRIPTION_KINDS.deleted, DESCRIPTION_KINDS.signalfd, DESCRIPTION_KINDS.timerfd,
  DESCRIPTION_KINDS.epoll, DESCRIPTION_KINDS.inotify, DESCRIPTION_KINDS.pidfd, DESCRIPTION_KINDS.unix, DESCRIPTION_KINDS.inet, DESCRIPTION_KINDS.tcp,
]);

/** A pipe (or FIFO) as a whole: its capacity and the bytes queued in it. */
export const pipeSchema = z.strictObject({
  id: z.string().regex(/^\d+$/),
  capacity: z.number().int().positive(),
  /** The blob holding its queued bytes, or null when it was empty. */
  data: blobName.nullable(),
});

/** A descriptor of a process: its number, close-on-exec, and the description it points at. */
export const fdSchema = z.strictObject({
  fd: z.number().int().nonnegative(),
  cloexec: z.boolean(),
  description: z.number().int().nonnegative(),
});

export const liveProcessSchema = z.strictObject({
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
  /** Every open descriptor, by number. */
  fds: z.array(fdSchema),
  /** Version 5; older images: none (as restored before). */
  timers: timersSchema,
  /** Version 5; older images: none. */
  advice: z.array(adviceSchema),
  /** Version 5; older images: null (left as the restorer's). */
  prctl: prctlSchema.nullable(),
});

/** A child that has exited but was not reaped: only what its parent's wait() will see. */
export const zombieSchema = z.strictObject({
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

const idLayoutSchema = z.strictObject({
  own: z.number().int().min(0).max(0xfffffffe),
  ranges: z.array(z.strictObject({ inside: z.number().int().min(0).max(0xfffffffe), count: z.number().int().min(1).max(0xffffffff) })).min(1).max(340),
});

export const userNamespaceSchema = z.strictObject({ uid: idLayoutSchema, gid: idLayoutSchema });

const idMapSchema = z.array(z.strictObject({
  inside: z.number().int().min(0).max(0xfffffffe),
  outside: z.number().int().min(0).max(0xfffffffe),
  count: z.number().int().min(1).max(0xffffffff),
})).min(1).max(340);

/** A user namespace as an OCI config mapped it (inside, outside, count): restored by vjail-oci from a config mapping the same. */
export const configUserNamespaceSchema = z.strictObject({ uid: idMapSchema, gid: idMapSchema });

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
  /**
   * The jail had a user namespace of its own (started without root, or
   * with `vjail run --user-ns`): the IDs inside it, as ranges, and which
   * inside ID was its owner's. Restore makes one with the same inside IDs:
   * the owner's on the restoring user, the rest on that user's subordinate
   * IDs (src/userns.ts). Credentials and System V owners in the image are
   * inside IDs. Null without one; absent (null) in images made before it was saved.
   */
  userNamespace: userNamespaceSchema.nullable().default(null),
  /**
   * An OCI container's user namespace (vjail-oci checkpoint): its maps as the
   * config gave them. Only vjail-oci's restore brings such an image back, in
   * a container whose config maps exactly the same; `vjail restore` refuses
   * it. Null otherwise.
   */
  configUserNamespace: configUserNamespaceSchema.nullable().default(null),
  /**
   * The text of the OCI seccomp policy file (`policy`) as it was at the
   * checkpoint: restore enforces this, not whatever the path holds by then.
   * Null without a policy, and in images older than version 5 (only the path).
   */
  policyText: z.string().max(16 << 20).nullable(),
  /** Parents before their children; the first is the jail's first process. */
  processes: z.array(processSchema).min(1),
  /** What the processes' descriptors point at. */
  descriptions: z.array(descriptionSchema),
  pipes: z.array(pipeSchema),
  blobs: z.array(blobSchema),
  /**
   * What could not be saved and was left out because the checkpoint said
   * `--external warn`, one line each; empty for a complete image.
   */
  external: z.array(z.string()),
  /** Shared-memory objects the processes map; empty in images older than version 5. */
  sharedMemory: z.array(sharedObjectSchema),
  /** The jail's own IPC namespace's semaphores and queues; null without one (and in images older than version 5). */
  sysvIpc: sysvIpcSchema.nullable(),
  /** The checkpoint said `--tcp-established`: established TCP connections are in it (kind `tcp`), in repair mode. */
  tcpEstablished: z.boolean(),
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
export type Description = z.infer<typeof descriptionSchema>;
export type DescriptionKind = Description['kind'];
export type PipeImage = z.infer<typeof pipeSchema>;
export type FdImage = z.infer<typeof fdSchema>;
export type Blob = z.infer<typeof blobSchema>;
export type SavedFile = z.infer<typeof savedFileSchema>;
export type Clocks = z.infer<typeof clocksSchema>;
export type SharedObject = z.infer<typeof sharedObjectSchema>;
export type SysvIpc = z.infer<typeof sysvIpcSchema>;
export type CpuImage = z.infer<typeof cpuSchema>;
export type Creds = z.infer<typeof credsSchema>;
export type Timers = z.infer<typeof timersSchema>;
export type Advice = z.infer<typeof adviceSchema>;

export const toHex = (v: bigint | number): string => `0x${BigInt.asUintN(64, BigInt(v)).toString(16)}`;
export const fromHex = (s: string): bigint => BigInt(s);
