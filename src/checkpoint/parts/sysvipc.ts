/**
 * System V IPC of a jail with an IPC namespace of its own (`--pid-ns`):
 * shared memory segments (as shared-memory objects, shmem.ts), semaphore
 * sets and message queues, each with its id, key, owner, creator and mode.
 *
 * Collected from our side, on a thread inside the jail's namespace
 * (ipcns.ts): the lists from /proc/sysvipc, a segment's data through an
 * attach of our own (its file, read through /proc/self/map_files), values
 * by GETALL, messages by msgrcv with MSG_COPY (left queued). Restored the
 * same way: /proc/sys/kernel/{shm,sem,msg}_next_id chooses the id, the
 * object is made with its creator's ids as effective ids, then its owner
 * and mode are set, its contents written, its messages sent in order.
 *
 * Not saved: semaphore undo lists (SEM_UNDO), times, last pids.
 */
import { closeSync, openSync, readFileSync, readlinkSync, writeSync } from 'node:fs';
import { ImageError, type ImageWriter, type OpenedImage, PAGE_SIZE, type SharedObject, type SysvIpc } from '../../image/format.js';
import { ipcNsCalls } from '../ipcns.js';
import { native } from '../../native.js';
import { SYS } from '../syscalls.js';
import { TraceeError } from '../tracee.js';
import { CheckpointUnsupported } from '../errors.js';
import { loadPageFile } from './memory.js';
import { mapFilesPath, saveFileData, saveOwnMemory, type SharedObjects } from './shmem.js';

const AT_FDCWD = -100;
const O_RDONLY = 0;
const O_WRONLY = 1;
const O_CLOEXEC = 0o2000000;
const IPC_CREAT = 0o1000;
const IPC_EXCL = 0o2000;
const IPC_NOWAIT = 0o4000;
const IPC_RMID = 0;
const IPC_SET = 1;
const IPC_STAT = 2;
const GETALL = 13;
const SETALL = 17;
const MSG_COPY = 0o40000;
const SHM_RDONLY = 0o10000;
const SHM_DEST = 0o1000;
/** struct shmid64_ds, semid64_ds, msqid64_ds on x86_64; ipc64_perm at 0 (uid 4, gid 8, mode 20). */
const SHMID_DS = 112;
const SEMID_DS = 104;
const MSQID_DS = 120;
const MSG_QBYTES = 88;

const cstr = (s: string): Buffer => Buffer.from(`${s}\0`);

/** Does process `pid` live in an IPC namespace other than ours? */
export function ownIpcNamespace(pid: number): boolean {
  return readlinkSync(`/proc/${pid}/ns/ipc`) !== readlinkSync('/proc/self/ns/ipc');
}

function check(what: string, r: bigint): bigint {
  if (r < 0n) throw new TraceeError(`${what} in the jail's IPC namespace failed: errno ${-r}`);
  return r;
}

/** Read a /proc file as the jail's IPC namespace shows it. */
function readInNs(pid: number, path: string): string {
  const fd = Number(check(`open of ${path}`, ipcNsCalls(pid, [[SYS.openat, AT_FDCWD, cstr(path), O_RDONLY | O_CLOEXEC, 0]])[0]!));
  try {
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/** /proc/sysvipc/X as objects keyed by its header's column names. */
function table(pid: number, which: 'shm' | 'sem' | 'msg'): Record<string, number>[] {
  const [head, ...rows] = readInNs(pid, `/proc/sysvipc/${which}`).split('\n').filter((l) => l.trim());
  const cols = head!.trim().split(/\s+/);
  return rows.map((r) => {
    const v = r.trim().split(/\s+/);
    return Object.fromEntries(cols.map((c, i) => [c, c === 'perms' ? parseInt(v[i]!, 8) : Number(v[i])]));
  });
}

const owner = (r: Record<string, number>): { mode: number; uid: number; gid: number; cuid: number; cgid: number } => ({
  mode: r.perms! & 0o777, uid: r.uid!, gid: r.gid!, cuid: r.cuid!, cgid: r.cgid!,
});

/**
 * Our attach of a segment as a file (its map_files entry); undefined where
 * that is closed to us (it needs CAP_SYS_ADMIN over the initial user
 * namespace: a jail checkpointed without root), and the attach is read
 * and written as our own memory instead.
 */
function openAttach(addr: bigint, size: number, flags: 'r' | 'r+'): number | undefined {
  try {
    return openSync(mapFilesPath('self', addr, addr + BigInt(Math.ceil(size / PAGE_SIZE) * PAGE_SIZE)), flags);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'EACCES') throw e;
    return undefined;
  }
}

/**
 * Every System V object of the jail's IPC namespace (the jail's process
 * `pid` is in it): segments go to `objects` with their data, the rest is
 * returned.
 */
export function collectSysvIpc(pid: number, image: ImageWriter, objects: SharedObjects): SysvIpc {
  for (const r of table(pid, 'shm')) {
    const shmid = r.shmid!;
    const size = r.size!;
    const addr = check(`shmat of segment ${shmid}`, ipcNsCalls(pid, [[SYS.shmat, shmid, 0, SHM_RDONLY]])[0]!);
    let pages;
    try {
      const fd = openAttach(addr, size, 'r');
      if (fd === undefined) pages = saveOwnMemory(image, addr, size);
      else {
        try {
          pages = saveFileData(image, fd, size);
        } finally {
          closeSync(fd);
        }
      }
    } finally {
      ipcNsCalls(pid, [[SYS.shmdt, addr]]);
    }
    objects.addSysv({ kind: 'sysv', shmid, key: r.key!, size, ...owner(r), removed: (r.perms! & SHM_DEST) !== 0, ...(pages ? { pages } : {}) });
  }
  const semaphores = table(pid, 'sem').map((r) => {
    const values = Buffer.alloc(r.nsems! * 2);
    check(`GETALL of semaphore set ${r.semid}`, ipcNsCalls(pid, [[SYS.semctl, r.semid!, 0, GETALL, values]])[0]!);
    return { id: r.semid!, key: r.key!, ...owner(r), values: Array.from({ length: r.nsems! }, (_, i) => values.readUInt16LE(i * 2)) };
  });
  const msgmax = Number(readInNs(pid, '/proc/sys/kernel/msgmax').trim());
  const queues = table(pid, 'msg').map((r) => {
    const ds = Buffer.alloc(MSQID_DS);
    check(`IPC_STAT of queue ${r.msqid}`, ipcNsCalls(pid, [[SYS.msgctl, r.msqid!, IPC_STAT, ds]])[0]!);
    const buf = Buffer.alloc(8 + msgmax);
    const messages = [];
    for (let i = 0; i < r.qnum!; i++) {
      const n = ipcNsCalls(pid, [[SYS.msgrcv, r.msqid!, buf, msgmax, i, IPC_NOWAIT | MSG_COPY]])[0]!;
      if (n < 0n) throw new CheckpointUnsupported(`message ${i} of System V queue ${r.msqid} cannot be copied (errno ${-n}); saving queued messages needs MSG_COPY`);
      messages.push({ type: Number(buf.readBigInt64LE(0)), data: buf.subarray(8, 8 + Number(n)).toString('base64') });
    }
    return { id: r.msqid!, key: r.key!, ...owner(r), maxBytes: Number(ds.readBigUInt64LE(MSG_QBYTES)), messages };
  });
  return { semaphores, queues };
}

/** Make the next object of `which` get id `id` (the namespace's *_next_id, as its own file says). */
function nextId(pid: number, which: 'shm' | 'sem' | 'msg', id: number): void {
  const path = `/proc/sys/kernel/${which}_next_id`;
  const fd = Number(check(`open of ${path}`, ipcNsCalls(pid, [[SYS.openat, AT_FDCWD, cstr(path), O_WRONLY | O_CLOEXEC, 0]])[0]!));
  try {
    writeSync(fd, String(id));
  } finally {
    closeSync(fd);
  }
}

type Owned = { id: number; key: number; mode: number; uid: number; gid: number; cuid: number; cgid: number };

/** Create one object with its id, as its creator (effective ids on this thread only), then set its owner and mode. */
function create(pid: number, which: 'shm' | 'sem' | 'msg', o: Owned, get: [number, ...(number | bigint | Buffer)[]], setCmd: [number, number], ds: Buffer): void {
  nextId(pid, which, o.id);
  ds.writeUInt32LE(o.uid, 4);
  ds.writeUInt32LE(o.gid, 8);
  ds.writeUInt32LE(o.mode, 20);
  const [, , got] = ipcNsCalls(pid, [
    [SYS.setresgid, -1, o.cgid, -1],
    [SYS.setresuid, -1, o.cuid, -1],
    get,
    [SYS.setresuid, -1, 0, -1],
    [SYS.setresgid, -1, 0, -1],
  ]);
  const what = `${which === 'shm' ? 'segment' : which === 'sem' ? 'semaphore set' : 'queue'} ${o.id} (key 0x${(o.key >>> 0).toString(16)})`;
  if (got === -17n) throw new ImageError(`System V ${what} already exists in the restored jail's IPC namespace`);
  if (check(`creating ${what}`, got!) !== BigInt(o.id)) throw new TraceeError(`System V ${what} came back with id ${got}`);
  check(`IPC_SET of ${what}`, ipcNsCalls(pid, [[setCmd[0], o.id, ...(setCmd[1] >= 0 ? [setCmd[1]] : []), IPC_SET, ds]])[0]!);
}

/**
 * Recreate the image's System V objects in the IPC namespace of `pid` (the
 * restorer, in the new jail's own): segments with their data, then
 * semaphore sets with their values and queues with their messages.
 */
export function restoreSysvIpc(pid: number, image: OpenedImage): void {
  const { sysvIpc, sharedMemory } = image.manifest;
  const segments = sharedMemory.filter((o): o is Extract<SharedObject, { kind: 'sysv' }> => o.kind === 'sysv');
  if (!sysvIpc && !segments.length) return;
  if (!ownIpcNamespace(pid)) throw new ImageError('the image holds System V objects, which need an IPC namespace of the jail\'s own (an image taken with --pid-ns)');
  const flags = (o: Owned): number => (o.key === 0 ? 0 : IPC_EXCL) | IPC_CREAT | o.mode;
  for (const s of segments) {
    create(pid, 'shm', { ...s, id: s.shmid }, [SYS.shmget, s.key, s.size, flags({ ...s, id: s.shmid })], [SYS.shmctl, -1], Buffer.alloc(SHMID_DS));
    if (!s.pages) continue;
    const addr = check(`shmat of segment ${s.shmid}`, ipcNsCalls(pid, [[SYS.shmat, s.shmid, 0, 0]])[0]!);
    try {
      const fd = openAttach(addr, s.size, 'r+');
      try {
        loadPageFile(image, s.pages, (page, buf) => {
          const at = page * PAGE_SIZE;
          const len = Math.max(0, Math.min(buf.length, s.size - at));
          if (fd === undefined) native().writeMem(process.pid, addr + BigInt(at), buf.subarray(0, len));
          else for (let off = 0; off < len; ) off += writeSync(fd, buf, off, len - off, at + off);
        });
      } finally {
        if (fd !== undefined) closeSync(fd);
      }
    } finally {
      ipcNsCalls(pid, [[SYS.shmdt, addr]]);
    }
  }
  for (const s of sysvIpc?.semaphores ?? []) {
    create(pid, 'sem', s, [SYS.semget, s.key, s.values.length, flags(s)], [SYS.semctl, 0], Buffer.alloc(SEMID_DS));
    const values = Buffer.alloc(s.values.length * 2);
    s.values.forEach((v, i) => values.writeUInt16LE(v, i * 2));
    check(`SETALL of semaphore set ${s.id}`, ipcNsCalls(pid, [[SYS.semctl, s.id, 0, SETALL, values]])[0]!);
  }
  for (const q of sysvIpc?.queues ?? []) {
    const ds = Buffer.alloc(MSQID_DS);
    ds.writeBigUInt64LE(BigInt(q.maxBytes), MSG_QBYTES);
    create(pid, 'msg', q, [SYS.msgget, q.key, flags(q)], [SYS.msgctl, -1], ds);
    const sends: [number, ...(number | bigint | Buffer)[]][] = q.messages.map((m) => {
      const data = Buffer.from(m.data, 'base64');
      const buf = Buffer.alloc(8 + data.length);
      buf.writeBigInt64LE(BigInt(m.type), 0);
      data.copy(buf, 8);
      return [SYS.msgsnd, q.id, buf, data.length, IPC_NOWAIT];
    });
    ipcNsCalls(pid, sends).forEach((r, i) => check(`sending message ${i} to queue ${q.id}`, r));
  }
}

/** Segments removed (IPC_RMID) before the checkpoint are removed again once every process has attached them. */
export function removeSysvSegments(pid: number, image: OpenedImage): void {
  for (const o of image.manifest.sharedMemory) {
    if (o.kind === 'sysv' && o.removed) check(`IPC_RMID of segment ${o.shmid}`, ipcNsCalls(pid, [[SYS.shmctl, o.shmid, IPC_RMID, 0]])[0]!);
  }
}
