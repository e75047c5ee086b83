import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { fixture, repoRoot } from './helpers/fixtures.js';

/**
 * A program that checkpoints or restores through the library, in a process
 * of its own: whatever it started (the hashing worker, native threads) must
 * not keep that process alive once its jail has ended.
 */
const SCRIPT = `
const [root, dir, bigmem, step] = process.argv.slice(1);
const { existsSync, writeFileSync } = await import('node:fs');
if (step === 'checkpoint') {
  const { spawnJail } = await import(root + '/dist/src/index.js');
  const { checkpoint } = await import(root + '/dist/src/checkpoint/dump.js');
  const jail = spawnJail({ command: [bigmem, dir, '4'], stdio: ['ignore', 'ignore', 'ignore'] });
  for (const end = Date.now() + 20000; !existsSync(dir + '/before'); await new Promise((r) => setTimeout(r, 20)))
    if (Date.now() > end) throw new Error('the workload did not fill its memory within 20 s');
  await checkpoint({ pid: jail.pid, image: dir + '/image' });
  console.log('checkpointed', (await jail.exited).signal);
} else {
  const { restore } = await import(root + '/dist/src/checkpoint/restore.js');
  const jail = await restore({ image: dir + '/image', stdio: ['ignore', 'ignore', 'ignore'], warn: () => {} });
  writeFileSync(dir + '/go', '');
  console.log('restored', (await jail.exited).status);
}
`;

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('a process using the library', () => {
  it('ends on its own after a checkpoint, and after a restore alone (4 MiB: page data hashed on the worker thread)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-libexit-'));
    dirs.push(dir);
    const run = (step: string) =>
      execa('node', ['--input-type=module', '-e', SCRIPT, repoRoot.replace(/\/$/, ''), dir, fixture('bigmem'), step], { reject: false, timeout: 30_000 });
    const saved = await run('checkpoint');
    expect(saved.timedOut, `the checkpointing process did not end within 30 s: ${saved.stdout} ${saved.stderr}`).toBe(false);
    expect({ code: saved.exitCode, out: saved.stdout, err: saved.stderr }).toEqual({ code: 0, out: 'checkpointed SIGKILL', err: '' });
    // A restore alone: the worker was started for it, with nothing else in the process to let go of it.
    const back = await run('restore');
    expect(back.timedOut, 'the restoring process did not end within 30 s once its jail had').toBe(false);
    expect({ code: back.exitCode, out: back.stdout, err: back.stderr }).toEqual({ code: 0, out: 'restored 0', err: '' });
    expect(readFileSync(join(dir, 'after'), 'utf8')).toBe(readFileSync(join(dir, 'before'), 'utf8'));
  }, 90_000);
});
