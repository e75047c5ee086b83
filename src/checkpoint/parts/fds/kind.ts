/**
 * The contract every kind of open file description follows: how a
 * descriptor is recognised, what is saved of its description (or why it
 * cannot be), and how the description is made again. Each kind is one file
 * beside this one; index.ts lists them and runs collection and restore.
 */
import type { Description, DescriptionKind, ImageWriter, OpenedImage, PipeImage } from '../../../image/format.js';

/** One descriptor of a stopped process, as /proc shows it. */
/** What the kinds look at of a descriptor's file (stat(2) through /proc/PID/fd/N); fs.BigIntStats is one. */
export interface FdStat {
  dev: bigint;
  ino: bigint;
  mode: bigint;
  nlink: bigint;
  uid: bigint;
  gid: bigint;
  rdev: bigint;
  size: bigint;
  isFile(): boolean;
  isDirectory(): boolean;
  isFIFO(): boolean;
  isSocket(): boolean;
  isCharacterDevice(): boolean;
  isBlockDevice(): boolean;
  isSymbolicLink(): boolean;
}

export interface FdProbe {
  /** The holder, by our (host) PID. */
  pid: number;
  fd: number;
  /** readlink of /proc/PID/fd/N: a path, `pipe:[ino]`, `socket:[ino]`, `anon_inode:[eventfd]`, ... */
  link: string;
  /** stat of the file the descriptor is open on, or null where there is none to stat. */
  st: FdStat | null;
  /** /proc/PID/fdinfo/N as text. */
  info: string;
  /** Open flags (fdinfo's `flags:`), O_CLOEXEC included. */
  flags: number;
  pos: bigint;
}

/** What a kind saves: its description without the fields every kind has. */
export type Saved<K extends DescriptionKind> = Omit<Extract<Description, { kind: K }>, 'id' | 'flags' | 'kind'>;

/** A description that cannot be saved: why, and the key `--inherit-fd` names it by. */
export class Unsaveable {
  constructor(
    readonly reason: string,
    readonly key: string,
    /** Likely held for a moment only (a /proc file being read): worth letting go and trying again. */
    readonly transient = false,
  ) {}
}

export interface CollectContext {
  writer: ImageWriter;
  /** Pipes (and FIFOs) seen so far, by id; a kind adds each one once. */
  pipes: Map<string, PipeImage>;
  /** Every descriptor of the jail's processes. */
  all: FdProbe[];
  /** Our own duplicate of the description (pidfd_getfd), closed after the dump. */
  grab(p: FdProbe): number;
  /** A process outside the jail holding this pipe or socket (by its /proc link), described; else undefined. */
  heldOutside(link: string): string | undefined;
  /** The checkpoint said --tcp-established: established TCP connections are saved (in repair mode). */
  tcpEstablished: boolean;
  /**
   * The jail's output streams are an engine's log pipes (vjail-oci under
   * conmon): a descriptor of them the jail only writes to is its standard
   * stream, which restore gives anew (what was written has left the jail).
   */
  outputPipes: boolean;
  /**
   * Keep our duplicate `fd` open after collection (a connection held in
   * repair mode until the jail is killed); `resume` undoes what was done to
   * it, run when the jail runs on instead.
   */
  keep(fd: number, resume: (kept: number) => void): void;
  /** The jail's standard stream (0-2 of its vjail-init) this descriptor shares its description with, if any. */
  stdioOf(p: FdProbe): number | undefined;
  /** A process of the jail (zombies too) by our PID: its PID in the image; undefined outside the jail. */
  imagePidOf(pid: number): number | undefined;
  /** The description (its id in the image) descriptor `fd` of `pid` points at, if the jail holds it. */
  descriptionOf(pid: number, fd: number): number | undefined;
}

/** A description made in vjail's own process, or a stand-in the restorer already holds. */
export type Created = { fd: number } | { stdio: number };

export interface CreateContext {
  image: OpenedImage;
  /** Our PID of the restored jail's first process: /proc/PID/root/PATH resolves a path as the jail sees it. */
  rootPid: number;
  /** Descriptors given with `vjail restore --inherit-fd N:KEY`, by key. */
  inherit: Map<string, number>;
  /** One object for every description that needs it (both ends of a pipe), made on first use. */
  once<T>(key: string, make: () => T): T;
  /** Close this descriptor of ours once every process holds what it needs. */
  closeLater(fd: number): void;
  /** Our PID of a restored process, by its PID in the image. */
  hostPidOf(imagePid: number): number | undefined;
}

export interface FdKind<K extends DescriptionKind> {
  kind: K;
  /** For docs/SUPPORT.md (src/support.ts): what descriptors it takes, and how they are saved and restored. */
  doc: { what: string; how: string };
  /** Does this descriptor's description belong to this kind? The first kind that matches takes it. */
  match(p: FdProbe, ctx: CollectContext): boolean;
  /** What to save (called once per description, with one of its descriptors), or why it cannot be saved. */
  collect(p: FdProbe, ctx: CollectContext): Saved<K> | Unsaveable;
  /**
   * Before anything is started: what restoring it needs is here, else an
   * ImageError. `where` names a descriptor that holds it ("file descriptor
   * 12 of process 2"). Paths are looked up under `root` ('' for ours; a
   * container's root file system for vjail-oci).
   */
  check?(d: Extract<Description, { kind: K }>, where: string, image: OpenedImage, inherit: Map<string, number>, root: string): void;
  /**
   * Made after every other kind's descriptions: established connections
   * bind to ports their listeners hold, which a listener made after them
   * could not bind again.
   */
  late?: boolean;
  /** Make the description again (its status flags are set afterwards by the caller). */
  create(d: Extract<Description, { kind: K }>, ctx: CreateContext): Created;
}

export const O_ACCMODE = 0o3;
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const O_PATH = 0o10000000;
