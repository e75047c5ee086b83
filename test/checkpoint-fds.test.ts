import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, vjailBin } from './helpers/fixtures.js';
import { alive, pidOf, vjail, vjailStart, waitFor } from './helpers/run.js';

let fdkinds: string;

beforeAll(() => {
  fdkinds = fixture('fdkinds');
  process.env.VJAIL_STATE_DIR = mkdtempSync(join(tmpdir(), 'vjail-fds-state-'));
});

afterAll(() => {
  delete process.env.VJAIL_STATE_DIR;
});

/** Every check line the fixture writes, each "NAME ok". */
const PARENT_CHECKS = [
  'pipe-data', 'pipe-nonblock', 'pipe-empty-eagain', 'pipe-write', 'cloexec', 'eventfd', 'eventfd-semaphore',
  'fifo-data', 'fifo-write', 'devnull', 'devzero', 'urandom', 'o-path', 'file-shared-offset',
];

async function started(runFlags: string[], extra: string[] = []) {
  const dir = mkdtempSync(join(tmpdir(), 'vjail-fds-'));
  writeFileSync(join(dir, 'data'), 'abcdefghij');
  const argv = [fdkinds, dir, ...extra];
  const run = vjailStart(['run', ...runFlags, '--', ...argv]);
  expect(await waitFor(() => existsSync(join(dir, 'ready')), 30_000)).toBe(true);
  return { dir, argv, run, img: join(dir, 'image') };
}

function verdicts(path: string): string[] {
  return readFileSync(path, 'utf8').trim().split('\n');
}

describe('descriptors of every saved kind', { timeout: 120_000 }, () => {
  it('pipes with data in flight, eventfds, a FIFO, devices, O_PATH and shared offsets come back in one process', async () => {
    const { dir, argv, run, img } = await started([]);
    const cp = await vjail(['checkpoint', '--pid', String(pidOf(argv)), '--image', img]);
    expect(cp.stderr).toMatch(/checkpoint 5\/5 kill/);
    expect(cp.exitCode).toBe(0);
    expect((await run).exitCode).toBe(137);
    const listed = (await vjail(['inspect', img])).stdout;
    expect(listed).toMatch(/^\s+10 pipe\s+flags 04000\s+#(\d+)\s+read end of pipe \d+$/m);
    expect(listed).toMatch(/^\s+13 eventfd .* eventfd, count 42$/m);
    expect(listed).toMatch(/^\s+14 eventfd .* eventfd, count 3, semaphore$/m);
    expect(listed).toMatch(/^\s+200 pipe .* cloexec #\d+\s+write end of pipe \d+$/m);
    expect(listed).toMatch(/^pipes\s+\d+ \(65536 bytes, 9 queued\), \d+ \(65536 bytes, 10 queued\)$/m);
    // One description for 10 and 12 (a dup), and for 11 and 200.
    const m = JSON.parse(readFileSync(join(img, 'manifest.json'), 'utf8'));
    const desc = (fd: number): number => m.processes[0].fds.find((f: { fd: number }) => f.fd === fd).description;
    expect(desc(12)).toBe(desc(10));
    expect(desc(200)).toBe(desc(11));
    expect(desc(22)).toBe(desc(21));
    // The queued bytes lie back to back in blobs.img (format 6); a damaged byte there stops the restore.
    expect(m.blobs.length).toBeGreaterThanOrEqual(2);
    expect(m.blobs.map((b: { offset: number }) => b.offset)).toEqual(m.blobs.map((_: unknown, i: number) => m.blobs.slice(0, i).reduce((n: number, b: { size: number }) => n + b.size, 0)));
    const bad = join(mkdtempSync(join(tmpdir(), 'vjail-fds-bad-')), 'image');
    cpSync(img, bad, { recursive: true });
    const pack = readFileSync(join(bad, 'blobs.img'));
    pack[pack.length - 1] ^= 0xff;
    writeFileSync(join(bad, 'blobs.img'), pack);
    const refused = await vjail(['restore', bad]);
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toMatch(/is damaged: blob-\d+\.img \(in blobs\.img\) does not match its checksum/);
    expect(pidOf(argv)).toBeUndefined();

    const restored = vjailStart(['restore', img]);
    expect(await waitFor(() => pidOf(argv) !== undefined, 30_000)).toBe(true);
    writeFileSync(join(dir, 'go'), '');
    const r = await restored;
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(verdicts(join(dir, 'out')).map((l) => l.split(' ').slice(0, 2).join(' '))).toEqual(PARENT_CHECKS.map((c) => `${c} ok`));
  });

  it('descriptions shared between a parent and its child stay shared (--pid-ns)', async () => {
    const { dir, argv, run, img } = await started(['--pid-ns'], ['fork']);
    const cp = await vjail(['checkpoint', '--pid', String(pidOf(argv, 2)), '--image', img]);
    expect(cp.exitCode).toBe(0);
    expect((await run).exitCode).toBe(137);
    const m = JSON.parse(readFileSync(join(img, 'manifest.json'), 'utf8'));
    const [parent, child] = m.processes;
    expect(child.fds.map((f: { description: number }) => f.description)).toEqual(parent.fds.map((f: { description: number }) => f.description));

    const restored = vjailStart(['restore', img]);
    expect(await waitFor(() => pidOf(argv, 3) !== undefined, 30_000)).toBe(true);
    writeFileSync(join(dir, 'go'), '');
    const r = await restored;
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(verdicts(join(dir, 'out')).every((l) => / ok/.test(l))).toBe(true);
    // The child reads, through its copy of the shared read end, what the parent wrote after the restore.
    expect(verdicts(join(dir, 'out.child'))).toEqual(['child-pipe ok from parent']);
  });

  it('descriptions that look alike (20 opens of /dev/null) are told apart, and the duplicates among them grouped, by kcmp', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-alike-'));
    const opens = Array.from({ length: 20 }, (_, i) => `${i + 3}</dev/null`).join(' ');
    const dups: [number, number][] = [[30, 5], [31, 17], [32, 3], [33, 22], [34, 5]];
    const script = `exec ${opens}; exec ${dups.map(([to, from]) => `${to}<&${from}`).join(' ')}; touch ${dir}/ready; exec sleep 987.5`;
    const run = vjailStart(['run', '--', 'bash', '-c', script]);
    try {
      expect(await waitFor(() => existsSync(join(dir, 'ready')) && pidOf(['sleep', '987.5']) !== undefined, 30_000)).toBe(true);
      const img = join(dir, 'image');
      const cp = await vjail(['checkpoint', '--pid', String(pidOf(['sleep', '987.5'])), '--image', img, '--leave-running']);
      expect(cp.exitCode).toBe(0);
      const m = JSON.parse(readFileSync(join(img, 'manifest.json'), 'utf8'));
      const fds = new Map<number, number>(m.processes[0].fds.map((f: { fd: number; description: number }) => [f.fd, f.description]));
      const opened = Array.from({ length: 20 }, (_, i) => fds.get(i + 3));
      expect(new Set(opened).size).toBe(20);
      for (const [to, from] of dups) expect(fds.get(to)).toBe(fds.get(from));
    } finally {
      run.kill('SIGKILL');
      await Promise.allSettled([run]);
    }
  });

  it('a pipeline (producer | consumer) in a named jail goes on after restore with nothing lost or repeated', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-pipeline-'));
    const out = join(dir, 'out');
    const script = `seq 1 1000000 | while read n; do echo "$n"; sleep 0.001; done > ${out}`;
    expect((await vjail(['run', '--name', 'pipeline', '--detach', '--pid-ns', '--', 'sh', '-c', script])).exitCode).toBe(0);
    expect(await waitFor(() => existsSync(out) && readFileSync(out, 'utf8').split('\n').length > 50, 30_000)).toBe(true);
    const cp = await vjail(['checkpoint', 'pipeline', '--image', join(dir, 'image')]);
    expect(cp.stderr).toMatch(/open file description\(s\) \((1|2) pipe\(s\)\)/);
    expect(cp.exitCode).toBe(0);
    const before = readFileSync(out, 'utf8').trim().split('\n').length;
    expect((await vjail(['restore', join(dir, 'image'), '--name', 'pipeline2', '--detach'])).exitCode).toBe(0);
    expect(await waitFor(() => readFileSync(out, 'utf8').trim().split('\n').length > before + 100, 30_000)).toBe(true);
    await vjail(['kill', 'pipeline2', '--signal', 'KILL']);
    const lines = readFileSync(out, 'utf8').trim().split('\n').map(Number);
    // Every number once, in order: seq's output queued in the pipe was neither lost nor read twice.
    expect(lines.slice(0, lines.length - 1)).toEqual(lines.slice(0, lines.length - 1).map((_, i) => i + 1));
  });

  it('a process waiting in vfork for its child (a shell starting commands) is caught between two: the checkpoint does not wait for a stop it cannot get', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-vfork-'));
    const name = `vforker-${process.pid}`;
    expect((await vjail(['run', '--name', name, '--detach', '--pid-ns', '--', fixture('vforker'), dir])).exitCode).toBe(0);
    try {
      expect(await waitFor(() => existsSync(join(dir, 'ready')), 30_000)).toBe(true);
      // Three in a row: each finds the process in vfork four times in five.
      for (let i = 0; i < 3; i++) {
        const cp = await vjail(['checkpoint', name, '--image', join(dir, `image-${i}`), '--leave-running'], { timeoutMs: 60_000 });
        expect(cp.exitCode, cp.stderr).toBe(0);
      }
    } finally {
      await vjail(['kill', name, '--signal', 'KILL']);
      await vjail(['rm', name]);
    }
  });

  it('the jail\'s standard output as a pipe to outside is external state: refused by default, the jail untouched', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-ext-'));
    const run = vjailStart(['run', '--', 'sh', '-c', `echo started; touch ${dir}/ready; exec sleep 987.6`], { streams: true });
    expect(await waitFor(() => existsSync(join(dir, 'ready')) && pidOf(['sleep', '987.6']) !== undefined, 30_000)).toBe(true);
    const pid = pidOf(['sleep', '987.6'])!;
    const img = join(dir, 'image');
    const cp = await vjail(['checkpoint', '--pid', String(pid), '--image', img]);
    expect(cp.exitCode).toBe(1);
    // Node's child_process streams are socket pairs: the jail's output leads to this test runner.
    expect(cp.stderr).toMatch(new RegExp(`^vjail:   process ${pid} \\(sleep\\) fd 1: .*\\[socket:\\[\\d+\\]\\]$`, 'm'));
    expect(existsSync(img)).toBe(false);
    expect(alive(pid)).toBe(true);
    // Untouched: still writing to the same place, still running.
    run.kill('SIGTERM');
    await run;
  });

  it('a FIFO also open outside the jail is external state: refused with the outside process named, the jail untouched', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-fifo-out-'));
    const fifo = join(dir, 'fifo');
    await execa('mkfifo', [fifo]);
    // Outside: a process holding the FIFO open (read and write, so that opening it does not block).
    const outside = execa('bash', ['-c', `exec 4<>${fifo}; touch ${dir}/outside; exec sleep 987.7`]);
    expect(await waitFor(() => existsSync(join(dir, 'outside')), 30_000)).toBe(true);
    const run = vjailStart(['run', '--', 'sh', '-c', `exec 3<>${fifo}; touch ${dir}/ready; exec sleep 987.8`]);
    try {
      expect(await waitFor(() => existsSync(join(dir, 'ready')) && pidOf(['sleep', '987.8']) !== undefined, 30_000)).toBe(true);
      const pid = pidOf(['sleep', '987.8'])!;
      const holder = pidOf(['sleep', '987.7'])!;
      const img = join(dir, 'image');
      const cp = await vjail(['checkpoint', '--pid', String(pid), '--image', img]);
      expect(cp.exitCode).toBe(1);
      expect(cp.stderr).toMatch(new RegExp(`^vjail:   process ${pid} \\(sleep\\) fd 3: FIFO ${fifo}, also open in process ${holder} \\(sleep\\) outside the jail`, 'm'));
      expect(existsSync(img)).toBe(false);
      expect(alive(pid)).toBe(true);
    } finally {
      run.kill('SIGKILL');
      outside.kill('SIGKILL');
      await Promise.allSettled([run, outside]);
    }
  });

  it('an io_uring holder is refused by default with its fd named, and goes on untouched; --external warn saves the rest and says so', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-uring-'));
    const ready = join(dir, 'ring');
    const run = vjailStart(['run', '--', fixture('uring'), 'hold', ready]);
    expect(await waitFor(() => existsSync(ready), 30_000)).toBe(true);
    const ring = Number(readFileSync(ready, 'utf8'));
    const pid = pidOf([fixture('uring'), 'hold', ready])!;
    const count = (): number => Number(readFileSync(`${ready}.count`, 'utf8'));
    const img = join(dir, 'image');
    const refused = await vjail(['checkpoint', '--pid', String(pid), '--image', img]);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toMatch(new RegExp(`^vjail:   process ${pid} \\(uring[^)]*\\) fd ${ring}: an io_uring instance`, 'm'));
    // Its rings, mapped, are named too: they go with the instance.
    expect(refused.stderr).toMatch(new RegExp(`^vjail:   process ${pid} \\(uring[^)]*\\) mapping 0x[0-9a-f]+-0x[0-9a-f]+: an io_uring instance .*\\[anon_inode:\\[io_uring\\]\\]$`, 'm'));
    expect(existsSync(img)).toBe(false);
    // Untouched: alive, and counting on from where it was.
    const before = count();
    expect(await waitFor(() => count() > before + 5, 20_000)).toBe(true);
    const warned = await vjail(['checkpoint', '--pid', String(pid), '--image', img, '--external', 'warn', '--leave-running']);
    expect(warned.exitCode).toBe(0);
    expect(warned.stderr).toMatch(/left out of the image: process \d+ \(uring[^)]*\) mapping .*io_uring/);
    expect((await vjail(['inspect', img])).stdout).toMatch(/^INCOMPLETE: saved with --external warn, without:$/m);
    const after = count();
    expect(await waitFor(() => count() > after + 5, 20_000)).toBe(true);
    run.kill('SIGTERM');
    await run;
  });

  it('a /proc file open for a moment: the jail is let go and the checkpoint tried again, and it succeeds once the file is closed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-transient-'));
    const out = join(dir, 'count');
    // The shell holds /proc/self/status open (as a process reading it does) until told to let go.
    const script = `exec 7</proc/self/status; : > ${dir}/ready; while [ ! -e ${dir}/release ]; do sleep 0.01; done; exec 7<&-; i=0; while :; do i=$((i+1)); echo $i > ${out}; sleep 0.02; done`;
    expect((await vjail(['run', '--name', 'transient', '--detach', '--pid-ns', '--', 'sh', '-c', script])).exitCode).toBe(0);
    try {
      expect(await waitFor(() => existsSync(join(dir, 'ready')), 30_000)).toBe(true);
      const cp = execa('node', [vjailBin, 'checkpoint', 'transient', '--image', join(dir, 'image'), '--leave-running'], { reject: false, timeout: 60_000 });
      let said = '';
      cp.stderr?.on('data', (d: Buffer) => (said += d.toString()));
      // Released once the first try has been refused and the jail let go: a later try finds it closed.
      expect(await waitFor(() => /trying again/.test(said) || cp.exitCode !== null, 30_000)).toBe(true);
      writeFileSync(join(dir, 'release'), '');
      const r = await cp;
      expect(r.stderr).toMatch(/^vjail: checkpoint 2\/5 freeze: process 2 \(sh\) fd 7: \/proc\/\d+\/status is a file of the kernel's .*: open for a moment only, likely; the jail was let go, trying again in 25 ms \(2 of 6\)$/m);
      expect(r.exitCode, r.stderr).toBe(0);
      const m = JSON.parse(readFileSync(join(dir, 'image', 'manifest.json'), 'utf8'));
      expect(m.external).toEqual([]);
      // The jail ran on between the tries, and after.
      expect(await waitFor(() => existsSync(out), 30_000)).toBe(true);
    } finally {
      await vjail(['kill', 'transient', '--signal', 'KILL']);
    }
  });

  it('a /proc file held open for good is refused after the tries, the jail untouched', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-held-'));
    const out = join(dir, 'count');
    const script = `exec 7</proc/self/status; i=0; while :; do i=$((i+1)); echo $i > ${out}; sleep 0.02; done`;
    expect((await vjail(['run', '--name', 'held', '--detach', '--pid-ns', '--', 'sh', '-c', script])).exitCode).toBe(0);
    try {
      expect(await waitFor(() => existsSync(out), 30_000)).toBe(true);
      const r = await vjail(['checkpoint', 'held', '--image', join(dir, 'image')]);
      expect(r.exitCode).toBe(1);
      expect(r.stderr.match(/trying again in \d+ ms/g)).toEqual(['25', '50', '100', '200', '400'].map((ms) => `trying again in ${ms} ms`));
      expect(r.stderr).toMatch(/checkpoint refused: \d+ process\(es\) hold state a checkpoint cannot save; nothing was saved and the jail runs on/);
      expect(existsSync(join(dir, 'image'))).toBe(false);
      const at = Number(readFileSync(out, 'utf8'));
      expect(await waitFor(() => Number(readFileSync(out, 'utf8')) > at + 5, 30_000)).toBe(true);
    } finally {
      await vjail(['kill', 'held', '--signal', 'KILL']);
    }
  });

  it('--external terminate ends only the process holding what cannot be saved; the rest is checkpointed and restored', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-term-'));
    const out = join(dir, 'count');
    // The child holds a descriptor of the kernel's that names a process (not data): it cannot be saved.
    const script = `(exec 7</proc/self/status; sleep 1000) & i=0; while :; do i=$((i+1)); echo $i > ${out}; sleep 0.02; done`;
    expect((await vjail(['run', '--name', 'holder', '--detach', '--pid-ns', '--', 'sh', '-c', script])).exitCode).toBe(0);
    expect(await waitFor(() => existsSync(out), 30_000)).toBe(true);
    const refused = await vjail(['checkpoint', 'holder', '--image', join(dir, 'image')]);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toMatch(/^vjail:   process 3 \(sleep\) fd 7: \/proc\/\d+\/status is a file of the kernel's/m);
    const cp = await vjail(['checkpoint', 'holder', '--image', join(dir, 'image'), '--external', 'terminate', '--grace', '2']);
    expect(cp.stderr).toMatch(/terminating 1 process\(es\) holding state that cannot be saved/);
    expect(cp.exitCode).toBe(0);
    const m = JSON.parse(readFileSync(join(dir, 'image', 'manifest.json'), 'utf8'));
    // The holder ended (SIGTERM): nothing left in the image holds what could not be saved.
    expect(m.external).toEqual([]);
    expect(m.descriptions.filter((d: { kind: string }) => d.kind === 'external')).toEqual([]);
    expect(m.processes.filter((p: { comm: string; state: string }) => p.state === 'live' && p.comm === 'sleep' && p.fds.some((f: { fd: number }) => f.fd === 7))).toEqual([]);
    const at = Number(readFileSync(out, 'utf8'));
    expect((await vjail(['restore', join(dir, 'image'), '--name', 'holder2', '--detach'])).exitCode).toBe(0);
    expect(await waitFor(() => Number(readFileSync(out, 'utf8')) > at + 10, 30_000)).toBe(true);
    await vjail(['kill', 'holder2', '--signal', 'KILL']);
  });
});
