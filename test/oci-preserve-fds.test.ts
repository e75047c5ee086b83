/**
 * vjail-oci `--preserve-fds N` (create, run, exec): fds 3..3+N-1 of the
 * runtime become the container process's fds 3..3+N-1, as runc passes them
 * (podman's --preserve-fds, socket activation), and no process of vjail's
 * keeps a copy.
 */
import { spawn } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { makeBundle, oci, ociBin, removeDir } from './helpers/oci.js';

const root = `/run/vjail-oci-preserve-test-${process.pid}`;
const dir = mkdtempSync(join(tmpdir(), 'vjail-oci-preserve-'));
const bundles: string[] = [];
const id = (name: string) => `${name}-${process.pid}`;

afterAll(async () => {
  for (const b of bundles) removeDir(b);
  removeDir(root);
  removeDir(dir);
});

async function bundle(args: string[]): Promise<string> {
  const b = await makeBundle((c) => {
    c.process.args = args;
  });
  bundles.push(b);
  return b;
}

/** vjail-oci with these descriptors as its fds 3, 4, ...; resolves when it exits, with what it wrote. */
async function ociWithFds(args: string[], fds: number[]) {
  const out = join(dir, `out-${Math.random()}`);
  const err = join(dir, `err-${Math.random()}`);
  const o = openSync(out, 'w');
  const e = openSync(err, 'w');
  try {
    const child = spawn('node', [ociBin, '--root', root, ...args], { stdio: ['ignore', o, e, ...fds], timeout: 60_000 });
    const exitCode = await new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    return { exitCode, stdout: readFileSync(out, 'utf8'), stderr: readFileSync(err, 'utf8') };
  } finally {
    closeSync(o);
    closeSync(e);
  }
}

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe('vjail-oci --preserve-fds', () => {
  it('run: fds 3, 4 and 5 are the container process\'s, in order; nothing else above 2', async () => {
    const b = await bundle(['sh', '-c', 'cat <&3; echo written >&4; cat <&5; ls /proc/self/fd | sort -n | tr "\\n" " "']);
    const three = openSync(file('three', 'from three\n'), 'r');
    const four = openSync(join(dir, 'four'), 'w');
    const five = openSync(file('five', 'from five\n'), 'r');
    try {
      const r = await ociWithFds(['run', '--preserve-fds', '3', '--bundle', b, id('run')], [three, four, five]);
      expect(r.stderr).toBe('');
      expect(r.exitCode).toBe(0);
      // ls's own directory descriptor is the one above 5.
      expect(r.stdout).toBe('from three\nfrom five\n0 1 2 3 4 5 6 ');
      expect(readFileSync(join(dir, 'four'), 'utf8')).toBe('written\n');
    } finally {
      for (const fd of [three, four, five]) closeSync(fd);
    }
  });

  it('create and start: once the process closes its fd 3, no copy is left (the reader sees end of file while it runs)', async () => {
    const b = await bundle(['sh', '-c', 'echo through >&3; exec 3>&-; sleep 30']);
    const fifo = join(dir, 'fifo');
    await execa('mkfifo', [fifo]);
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const writer = openSync(fifo, 'w');
    const name = id('created');
    try {
      const created = await ociWithFds(['create', '--preserve-fds', '1', '--bundle', b, name], [writer]);
      expect(created.stderr).toBe('');
      expect(created.exitCode).toBe(0);
      closeSync(writer);
      expect((await oci(['--root', root, 'start', name])).exitCode).toBe(0);
      let text = '';
      const buf = Buffer.alloc(256);
      const deadline = Date.now() + 15_000;
      for (;;) {
        let n: number;
        try {
          n = readSync(reader, buf);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
          if (Date.now() > deadline) throw new Error(`no end of file on the fifo within 15 s (read so far: ${JSON.stringify(text)}): a copy of the preserved fd is held`);
          await new Promise((r) => setTimeout(r, 50));
          continue;
        }
        if (n === 0) break;
        text += buf.subarray(0, n).toString();
      }
      expect(text).toBe('through\n');
      const state = JSON.parse((await oci(['--root', root, 'state', name])).stdout);
      expect(state.status).toBe('running');
    } finally {
      closeSync(reader);
      await oci(['--root', root, 'delete', '--force', name]);
    }
  });

  it('exec: the new process gets the preserved fds', async () => {
    const b = await bundle(['sleep', '30']);
    const name = id('exec');
    const given = openSync(file('given', 'to the exec\n'), 'r');
    try {
      const created = await ociWithFds(['create', '--bundle', b, name], []);
      expect(created.exitCode).toBe(0);
      expect((await oci(['--root', root, 'start', name])).exitCode).toBe(0);
      const r = await ociWithFds(['exec', '--preserve-fds', '1', name, 'sh', '-c', 'cat <&3'], [given]);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('to the exec\n');
      expect(r.exitCode).toBe(0);
    } finally {
      closeSync(given);
      await oci(['--root', root, 'delete', '--force', name]);
    }
  });

  it('errors: a count that is no number, and descriptors that are not open', async () => {
    const b = await bundle(['true']);
    const bad = await ociWithFds(['run', '--preserve-fds', 'two', '--bundle', b, id('bad')], []);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toBe('vjail-oci: --preserve-fds two: not a count of descriptors; give N to pass fds 3..3+N-1 (at most 1000)\n');
    // Node's own descriptors take the lowest free numbers: far enough up, they are not open.
    const closed = await ociWithFds(['run', '--preserve-fds', '100', '--bundle', b, id('closed')], []);
    expect(closed.exitCode).toBe(1);
    expect(closed.stderr).toMatch(/^vjail-oci: --preserve-fds 100: fd \d+ is not open; pass only as many descriptors as are open from fd 3\n$/);
  });
});
