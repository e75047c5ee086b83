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

export const IMAGE_MAGIC = 'vjail-image';
export const IMAGE_VERSION = 5;
/** Versions `openImage` reads. */
export const READABLE_VERSIONS = [1, 2, 3, 4, 5] as const;
export const PAGE_SIZE = 4096;
export const HEADER_FILE = 'IMAGE';
export const MANIFEST_FILE = 'manifest.json';

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
export const MAPPING_KINDS = ['anon', 'file', 'heap', 'stack', 'vdso', 'vvar', 'vvar_vclock', 'vsyscall'] as const;

export const backingFileSchema = z.strictObject({
  path: z.string().startsWith('/'),
  size: z.number().int().nonnegative(),
  mtimeMs: z.number(),
  sha256,
});

export const pagesSchema = z.strictObject({
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
 * queue, a deleted file's contents): DIR/blob-<n>.img, checked like a page
 * file before anything is restored.
 */
export const blobSchema = z.strictObject({
  file: z.string().regex(/^blob-\d+\.img$/),
  size: z.number().int().nonnegative(),
  sha256,
});
const blobName = z.string().regex(/^blob-\d+\.img$/);

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
  stdio: z.strictObject({ kind: z.literal('stdio'), ...description, stream: z.number().int().min(0).max(2), what: z.enum(['terminal', 'file']) }),
  /** One end of a pipe; the pipe itself (capacity, queued bytes) is in the manifest's `pipes`. */
  pipe: z.strictObject({ kind: z.literal('pipe'), ...description, pipe: z.string().regex(/^\d+$/), end: z.enum(['read', 'write']) }),
  /** A FIFO reopened by its path; its queued bytes are in `pipes` under the FIFO's inode. */
  fifo: z.strictObject({ kind: z.literal('fifo'), ...description, path: z.string().startsWith('/'), pipe: z.string().regex(/^\d+$/) }),
  /** An eventfd: its counter and whether it counts as a semaphore. */
  eventfd: z.strictObject({ kind: z.literal('eventfd'), ...description, count: hex, semaphore: z.boolean() }),
  /** A well-known character device (/dev/null, /dev/zero, /dev/urandom, ...) reopened by its path. */
  chardev: z.strictObject({ kind: z.literal('chardev'), ...description, path: z.string().startsWith('/'), rdev: z.string().regex(/^\d+:\d+$/) }),
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
  DESCRIPTION_KINDS.eventfd, DESCRIPTION_KINDS.chardev, DESCRIPTION_KINDS.unix, DESCRIPTION_KINDS.inet, DESCRIPTION_KINDS.tcp,
  DESCRIPTION_KINDS.external,
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
  /** What the processes' descriptors point at. */
  descriptions: z.array(descriptionSchema),
  pipes: z.array(pipeSchema),
  blobs: z.array(blobSchema),
  /**
   * What could not be saved and was left out because the checkpoint said
   * `--external warn`, one line each; empty for a complete image.
   */
  external: z.array(z.string()),
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
export type Clocks = z.infer<typeof clocksSchema>;
export type CpuImage = z.infer<typeof cpuSchema>;

export const toHex = (v: bigint | number): string => `0x${BigInt.asUintN(64, BigInt(v)).toString(16)}`;
export const fromHex = (s: string): bigint => BigInt(s);
