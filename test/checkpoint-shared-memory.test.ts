import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { fixture } from './helpers/fixtures.js';
import { pidOf, type Started, vjail, vjailStart as start, waitFor } from './helpers/run.js';
import { signAsThisMachine } from './helpers/old-images.js';
import { IMAGE_VERSION } from '../src/image/schema.js';

let workers: string;

beforeAll(() => {
  workers = fixture('shmworkers');
});

/** Every jail a test started; one a failed test left running is ended after it. */
const jails: { jail: Started; done: boolean }[] = [];
const vjailStart = (args: string[], glibcTunables?: string): Started => {
  const saved = process.env.GLIBC_TUNABLES;
  if (glibcTunables) process.env.GLIBC_TUNABLES = glibcTunables;
  try {
    const entry = { jail: start(args), done: false };
    void entry.jail.then(() => (entry.done = true));
    jails.push(entry);
    return entry.jail;
  } finally {
    if (glibcTunables && saved === undefined) delete process.env.GLIBC_TUNABLES;
    else if (glibcTunables) process.env.GLIBC_TUNABLES = saved;
  }
};

afterEach(async () => {
  for (const e of jails) if (!e.done) e.jail.kill('SIGKILL');
  await Promise.allSettled(jails.splice(0).map((e) => e.jail));
});

interface Round {
  k: number;
  status: string;
  total: number;
  /** Everything after the total: the region's maps name and perms, and what the mode checks. */
  rest: string;
}

function lines(out: string): string[] {
  return existsSync(out) ? readFileSync(out, 'utf8').split('\n').filter(Boolean) : [];
}

function rounds(out: string): Round[] {
  return lines(out).filter((l) => !l.startsWith('final')).map((l) => {
    const [k, status, total, ...rest] = l.split(' ');
    return { k: Number(k), status: status!, total: Number(total), rest: rest.join(' ') };
  });
}

async function expectProgress(cond: () => boolean, jail: Started): Promise<void> {
  if (await waitFor(cond, 30_000)) return;
  jail.kill('SIGKILL');
  const r = await jail;
  expect.fail(`no progress; the jail exited with ${r.exitCode} and said: ${r.stderr}`);
}

interface Cycle {
  dir: string;
  out: string;
  image: string;
  /** Rounds written before the checkpoint. */
  before: number;
  restored: Started;
  checkpointOutput: string;
}

/**
 * Run `shmworkers MODE OUT [ARG]` in a jail with its own PID (and IPC)
 * namespace, checkpoint it after 20 rounds (killing it), run `between`,
 * restore it and wait for 20 more rounds.
 */
async function cycle(mode: string, arg?: (dir: string) => string, between?: (c: { dir: string; image: string }) => void): Promise<Cycle> {
  const dir = mkdtempSync(join(tmpdir(), `vjail-shm-${mode}-`));
  const out = join(dir, 'out');
  const argv = [workers, mode, out, ...(arg ? [arg(dir)] : [])];
  const run = vjailStart(['run', '--pid-ns', '--', ...argv]);
  await expectProgress(() => rounds(out).length >= 20, run);
  const image = join(dir, 'image');
  const cp = await vjail(['checkpoint', '--pid', String(pidOf(argv, 2)), '--image', image]);
  expect(cp.stderr).toMatch(/checkpoint 5\/5 kill/);
  expect(cp.exitCode).toBe(0);
  await run;
  const before = rounds(out).length;
  between?.({ dir, image });
  const restored = vjailStart(['restore', image]);
  await expectProgress(() => rounds(out).length >= before + 20, restored);
  return { dir, out, image, before, restored, checkpointOutput: cp.stderr };
}

/** Ask the parent to finish (OUT.stop), wait for the jail to end, and return the final lines. */
async function finish(c: Cycle): Promise<string[]> {
  writeFileSync(`${c.out}.stop`, '');
  const r = await c.restored;
  expect(r.exitCode, r.stderr).toBe(0);
  return lines(c.out).filter((l) => l.startsWith('final'));
}

/**
 * Every round, before and after the restore, counted on without a gap and
 * echoed by every worker (so a write by one process was seen by the
 * others); the workers' shared total kept growing; the region kept its name
 * and permissions, and whatever the mode checks stayed the same.
 */
function expectShared(c: Cycle, name: RegExp): string {
  const all = rounds(c.out);
  expect(all.length).toBeGreaterThanOrEqual(c.before + 20);
  all.forEach((r, i) => expect(r.k).toBe(i + 1));
  expect(all.filter((r) => r.status !== 'ok')).toEqual([]);
  for (let i = 1; i < all.length; i++) expect(all[i]!.total).toBeGreaterThanOrEqual(all[i - 1]!.total);
  expect(all.at(-1)!.total).toBeGreaterThan(all[c.before - 1]!.total);
  const rests = new Set(all.map((r) => r.rest));
  expect([...rests]).toHaveLength(1);
  const [maps, perms] = [...rests][0]!.split(' ');
  expect(maps).toMatch(name);
  expect(perms).toBe('rw-s');
  return [...rests][0]!;
}

/** The image: its shared-memory objects, and the object each live process maps at the region's address. */
function manifest(image: string): { profile: string; sharedMemory: { id: number; kind: string }[]; sysvIpc: unknown; processes: { state: string; mappings: { kind: string; object?: number; perms: string }[] }[] } {
  return JSON.parse(readFileSync(join(image, 'manifest.json'), 'utf8'));
}

function expectOneObjectInEveryProcess(image: string, kind: string): void {
  const m = manifest(image);
  const objects = m.sharedMemory.filter((o) => o.kind === kind);
  expect(objects.length).toBeGreaterThanOrEqual(1);
  const live = m.processes.filter((p) => p.state === 'live');
  expect(live).toHaveLength(4);
  for (const p of live) {
    const ids = p.mappings.filter((x) => x.kind === 'object' && x.perms.endsWith('s')).map((x) => x.object);
    expect(ids).toContain(objects[0]!.id);
  }
}

describe('memory shared between the processes of a jail', () => {
  it('MAP_SHARED|MAP_ANONYMOUS inherited by forked workers stays one region after restore', async () => {
    const c = await cycle('anon');
    expect(c.checkpointOutput).toMatch(/1 shared-memory object\(s\)/);
    expectShared(c, /^\/dev\/zero_\(deleted\)$/);
    expectOneObjectInEveryProcess(c.image, 'anon');
    await finish(c);
  });

  it('a memfd mapped by every process comes back as one memfd with its name', async () => {
    const c = await cycle('memfd');
    expectShared(c, /^\/memfd:vjail-test_\(deleted\)$/);
    expectOneObjectInEveryProcess(c.image, 'memfd');
    const memfd = manifest(c.image).sharedMemory.find((o) => o.kind === 'memfd') as unknown as { name: string; seals: number };
    expect(memfd.name).toBe('vjail-test');
    expect(memfd.seals).toBe(0x2 | 0x4); // F_SEAL_SHRINK | F_SEAL_GROW
    await finish(c);
  });

  it('where the profile hides memfd_create, a memfd comes back as an unlinked file of /dev/shm, said so, still shared', async () => {
    // glibc without rseq, which a profile of a kernel before 3.17 (no memfd_create) lacks as well.
    const dir = mkdtempSync(join(tmpdir(), 'vjail-shm-nomemfd-'));
    const out = join(dir, 'out');
    const argv = [workers, 'memfd', out];
    const run = vjailStart(['run', '--pid-ns', '--', ...argv], 'glibc.pthread.rseq=0');
    await expectProgress(() => rounds(out).length >= 20, run);
    const image = join(dir, 'image');
    expect((await vjail(['checkpoint', '--pid', String(pidOf(argv, 2)), '--image', image])).exitCode).toBe(0);
    await run;
    // The same image under linux-3.10, as if taken there with the memfd handed in from outside.
    const text = `${JSON.stringify({ ...manifest(image), profile: 'linux-3.10' })}\n`;
    writeFileSync(join(image, 'manifest.json'), text);
    writeFileSync(join(image, 'IMAGE'), `vjail-image ${IMAGE_VERSION}\nmanifest sha256:${createHash('sha256').update(text).digest('hex')}\n`);
    signAsThisMachine(image);
    const before = rounds(out).length;
    const restored = vjailStart(['restore', image]);
    await expectProgress(() => rounds(out).length >= before + 20, restored);
    const after = rounds(out).slice(before);
    expect(after.filter((r) => r.status !== 'ok')).toEqual([]);
    // The first round may have read its maps line before the checkpoint.
    expect(new Set(after.slice(1).map((r) => r.rest.split(' ')[0]))).toEqual(new Set(['/dev/shm/vjail-memfd-vjail-test_(deleted)']));
    writeFileSync(`${out}.stop`, '');
    const r = await restored;
    expect(r.stderr).toMatch(/warning: memfd_create is not available to the restored jail \(errno 38\): memfd vjail-test comes back as an unlinked file in \/dev\/shm, unsealed/);
    expect(readdirSync('/dev/shm').filter((f) => f.startsWith('vjail-memfd-'))).toEqual([]);
  });

  it('POSIX shared memory (shm_open) is found again, refused when it changed, and re-created when /dev/shm lost it', async () => {
    const name = `/vjail-test-${process.pid}`;
    const path = `/dev/shm${name}`;
    try {
      // The file is still there, as the checkpoint left it: the restore maps it again.
      const c = await cycle('posix', () => name);
      expectShared(c, new RegExp(`^${path}$`));
      await finish(c);
      // The workload went on writing to it: the image's contents are no longer there.
      const again = await vjail(['restore', c.image]);
      expect(again.exitCode).not.toBe(0);
      expect(again.stderr.trim().split('\n').at(-1)).toMatch(new RegExp(`${path} exists here with other contents than the image saved; remove it`));
      // As on another host: the file is gone; the restore brings it back with the saved contents.
      rmSync(path);
      rmSync(`${c.out}.stop`);
      const seen = rounds(c.out).length;
      const third = vjailStart(['restore', c.image]);
      await expectProgress(() => rounds(c.out).length >= seen + 20, third);
      const after = rounds(c.out).slice(seen);
      after.forEach((r, i) => expect(r.k).toBe(c.before + 1 + i));
      expect(after.filter((r) => r.status !== 'ok')).toEqual([]);
      expect(new Set(after.map((r) => r.rest))).toEqual(new Set(rounds(c.out).slice(0, 1).map((r) => r.rest)));
      await finish({ ...c, restored: third });
    } finally {
      rmSync(path, { force: true });
    }
  });

  it('a deleted file mapped shared and private comes back unlinked, with its contents and the private copy\'s own page', async () => {
    const c = await cycle('deleted', (dir) => join(dir, 'data'));
    const rest = expectShared(c, new RegExp(`^${join(c.dir, 'data')}_\\(deleted\\)$`));
    expect(rest).toMatch(/ private=[0-9a-f]+/);
    expect(existsSync(join(c.dir, 'data'))).toBe(false);
    expect(readdirSync(c.dir).filter((f) => f.includes('data'))).toEqual([]);
    await finish(c);
  });

  it('System V shared memory, semaphores and messages come back with their ids, keys, modes and contents', async () => {
    const c = await cycle('sysv');
    const rest = expectShared(c, /^\/SYSV00005150_\(deleted\)$/);
    expect(rest).toMatch(/ sem=7,0,42 /);
    expect(rest).toMatch(/ qnum=3 /);
    expect(rest).toMatch(/ shmmode=640$/);
    // The fixture removed one object of each kind first: the ids are not those a fresh namespace hands out first (0).
    expect(rest).toMatch(/ semid=1 msgid=1 qnum=3 idle=3 /);
    const m = manifest(c.image);
    expect(m.sharedMemory.map((o) => o.kind)).toEqual(['sysv', 'sysv', 'sysv']);
    expect(m.sysvIpc).toMatchObject({ semaphores: [{ id: 1, key: 0x5151, mode: 0o660, values: [7, 0, 42] }], queues: [{ id: 1, key: 0x5152, mode: 0o620 }] });
    expect(await finish(c)).toEqual([
      'final message 1 hello-1',
      'final message 2 hello-2',
      'final message 3 hello-3',
      'final idle 77 0',
      'final done',
    ]);
  });

  it('System V shared memory of a jail without an IPC namespace of its own is refused in one line, and the jail keeps running', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-shm-host-ipc-'));
    const out = join(dir, 'out');
    const argv = [workers, 'sysv', out, 'solo'];
    const run = vjailStart(['run', '--', ...argv]);
    await expectProgress(() => rounds(out).length >= 5, run);
    const cp = await vjail(['checkpoint', '--pid', String(pidOf(argv)), '--image', join(dir, 'image')]);
    expect(cp.exitCode).toBe(2);
    expect(cp.stderr.trim().split('\n').at(-1)).toMatch(/System V shared memory attached .* no IPC namespace of its own .* run it with --pid-ns/);
    const n = rounds(out).length;
    await expectProgress(() => rounds(out).length >= n + 5, run);
    writeFileSync(`${out}.stop`, '');
    expect((await run).exitCode).toBe(0);
  });
});
