/**
 * A made-up manifest in the current format, shaped as a real one of a small
 * program is (a process of two threads, a program and its libraries mapped,
 * memory of its own in page files, signal handlers, descriptors): for a
 * process that starts before its image comes (a page server's supervisor)
 * to run the manifest's parser and checks once, so that the real image's
 * run is not its first. A first run costs several times the next (zod's
 * checks and the JSON parser not yet compiled by V8), and the real image's
 * comes while the migrated jail is stopped. test/image-sample.test.ts keeps
 * it valid as the format changes.
 */
import { IMAGE_MAGIC, IMAGE_VERSION, PAGE_SIZE } from './schema.js';

const hex = (n: number | bigint): string => `0x${n.toString(16)}`;
const digest = (seed: number): string => seed.toString(16).padStart(2, '0').repeat(32);
const base64Of = (bytes: number): string => Buffer.alloc(bytes, 0x5a).toString('base64');

const GPRS = ['r15', 'r14', 'r13', 'r12', 'rbp', 'rbx', 'r11', 'r10', 'r9', 'r8', 'rax', 'rcx', 'rdx', 'rsi', 'rdi', 'orig_rax', 'rip', 'cs', 'eflags', 'rsp', 'ss', 'fs_base', 'gs_base', 'ds', 'es', 'fs', 'gs'];

function thread(tid: number): object {
  return {
    tid,
    registers: { gpr: Object.fromEntries(GPRS.map((g, i) => [g, hex(0x7f0000001000 + i * 8)])), xsave: base64Of(2696), xfeatures: '0x207' },
    blocked: '0x0',
    pending: [],
    rseq: { address: hex(0x7f4a00002060 + tid), size: 32, signature: '0x53053053' },
    robustList: { head: hex(0x7f4a00001a20), length: '0x18' },
    clearChildTid: hex(0x7f4a00001a10),
    comm: 'sample',
    pdeathsig: 0,
    timerSlack: '50000',
    creds: {
      uids: [0, 0, 0, 0], gids: [0, 0, 0, 0], groups: [],
      caps: { inheritable: '0x0', permitted: '0x1ffffffffff', effective: '0x1ffffffffff', bounding: '0x1ffffffffff', ambient: '0x0' },
      securebits: 0, noNewPrivs: true, loginuid: null,
    },
  };
}

function mappings(): object[] {
  const out: object[] = [];
  let at = 0x7f4a00000000;
  let file = 0;
  let sums = 0;
  const map = (pages: number, perms: string, kind: string, name: string | null, extra: object = {}): void => {
    out.push({ start: hex(at), end: hex(at + pages * PAGE_SIZE), perms, offset: '0x0', kind, name, ...extra });
    at += (pages + 1) * PAGE_SIZE;
  };
  const own = (pages: number): object => {
    const size = pages * PAGE_SIZE;
    const chunks = { size: 256 << 10, offset: sums };
    sums += 32 * Math.ceil(size / chunks.size);
    return { pages: { file: `pages-${file++}.img`, size, sha256: digest(file), runs: [[0, pages]], chunks } };
  };
  for (const [path, size] of [['/usr/bin/sample', 16328], ['/usr/lib/x86_64-linux-gnu/libc.so.6', 1922136], ['/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2', 210968]] as const) {
    const backing = { file: { path, size, mtimeMs: 1700000000000.5, sha256: digest(size & 0xff) } };
    for (const perms of ['r--p', 'r-xp', 'r--p']) map(4, perms, 'file', path, backing);
    map(2, 'rw-p', 'file', path, { ...backing, ...own(2) });
  }
  map(33, 'rw-p', 'heap', '[heap]', own(33));
  map(4096, 'rw-p', 'anon', null, own(4096));
  map(4, 'r--p', 'vvar', '[vvar]');
  map(2, 'r-xp', 'vdso', '[vdso]');
  map(33, 'rw-p', 'stack', '[stack]', own(9));
  out.push({ start: '0xffffffffff600000', end: '0xffffffffff601000', perms: '--xp', offset: '0x0', kind: 'vsyscall', name: '[vsyscall]' });
  return out;
}

/** The sample manifest as the JSON text an image holds. */
export function sampleManifestText(): string {
  const manifest = {
    format: IMAGE_MAGIC,
    version: IMAGE_VERSION,
    createdAt: '2026-01-01T00:00:00.000Z',
    host: { release: '6.1.0', machine: 'x86_64', pageSize: PAGE_SIZE },
    profile: 'host',
    policy: null,
    emulate: [],
    clocks: { monotonic: '81238159327375', boottime: '81238159661862' },
    cpu: { baseline: false, flags: ['sse4_2', 'avx', 'avx2', 'aes', 'sha_ni'], xfeatures: '0x207', xstateUsed: '0x3', xstate: [{ bit: 2, offset: 576, size: 256 }, { bit: 9, offset: 2432, size: 8 }] },
    pidNamespace: true,
    userNamespace: null,
    configUserNamespace: null,
    policyText: null,
    processes: [{
      state: 'live', pid: 2, pgid: 2, sid: 2, ppid: 1,
      comm: 'sample', exe: '/usr/bin/sample', cwd: '/', umask: 0o22, personality: '0x0',
      rlimits: Array.from({ length: 16 }, (_, resource) => ({ resource, soft: '0xffffffffffffffff', hard: '0xffffffffffffffff' })),
      mm: {
        startCode: '0x555500001000', endCode: '0x5555000013e5', startData: '0x555500003dd0', endData: '0x555500004050', startBrk: '0x555500005000', brk: '0x555500026000',
        startStack: '0x7ffc00002010', argStart: '0x7ffc00003a80', argEnd: '0x7ffc00003ab5', envStart: '0x7ffc00003ab5', envEnd: '0x7ffc00003fd2', auxv: base64Of(368),
      },
      signals: {
        actions: [2, 10, 15, 17].map((signal) => ({ signal, handler: '0x555500001200', flags: '0x14000000', restorer: '0x7f4a00050320', mask: '0x0' })),
        pending: [],
      },
      threads: [thread(2), thread(3)],
      mappings: mappings(),
      vdso: { size: 8192, sha256: digest(7), symbols: ['__vdso_clock_gettime', '__vdso_gettimeofday', '__vdso_time', '__vdso_getcpu'].map((name, i) => ({ name, offset: 0x600 + i * 0x40, size: 0x40 })) },
      fds: [0, 1, 2].map((fd) => ({ fd, cloexec: false, description: fd })),
      timers: { itimers: [], posix: [] },
      advice: [],
      prctl: { dumpable: 1, childSubreaper: false, thpDisable: false },
    }],
    descriptions: [0, 1, 2].map((stream) => ({ kind: 'stdio', id: stream, flags: 0, stream, what: 'file' })),
    pipes: [],
    blobs: [],
    external: [],
    sharedMemory: [],
    sysvIpc: null,
    tcpEstablished: false,
  };
  return JSON.stringify(manifest, null, 1);
}
