/**
 * A container checkpointed through podman here (--export) restores under
 * other kernels: the vjail image in the archive, with a bundle of the same
 * root file system, restored by vjail-oci in Debian's 6.1 and 6.12 under
 * qemu (src/vm/). The container runs with io.vjail.cpu-baseline, so the
 * image does not need this host's CPU features.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runInKernel } from '../src/vm/index.js';
import { repoRoot } from './helpers/fixtures.js';
import { busyboxRootfs, importBusyboxImage, oci, podman, podmanRunFlags, removeDir } from './helpers/oci.js';

const IMAGE = `localhost/vjail-oci-xk-test-${process.pid}`;
const NAME = `vjail-oci-xk-${process.pid}`;
let share: string;
/** The counter's log as it was when checkpointed. */
let saved: string;

const lines = (text: string): [string, number][] => text.split('\n').filter(Boolean).map((l) => [l.split(' ')[0]!, Number(l.split(' ')[1])]);

beforeAll(async () => {
  share = mkdtempSync(join(tmpdir(), 'vjail-oci-xk-'));
  const data = join(share, 'data');
  mkdirSync(data);
  await importBusyboxImage(IMAGE);
  const script = 'r=$RANDOM$RANDOM; i=0; while :; do i=$((i+1)); echo "$r $i" >> /data/log; sleep 0.05; done';
  const run = await podman(['run', '-d', '--name', NAME, ...podmanRunFlags(), '--annotation', 'io.vjail.cpu-baseline=true', '-v', `${data}:/data`, IMAGE, 'sh', '-c', script]);
  expect(run.exitCode).toBe(0);
  const end = Date.now() + 30_000;
  while (lines(readFileSync(join(data, 'log'), { encoding: 'utf8', flag: 'a+' })).length < 10 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  const archive = join(share, 'archive.tar');
  const cp = await podman(['container', 'checkpoint', '--export', archive, '--compress', 'none', NAME]);
  expect(cp.exitCode).toBe(0);
  saved = readFileSync(join(data, 'log'), 'utf8');
  await podman(['rm', '-f', NAME]);
  // The image from the archive, and a bundle of the same root file system with the same volume.
  await execa('tar', ['-C', share, '-xf', archive, 'checkpoint/vjail', 'checkpoint/inventory.img']);
  const bundle = join(share, 'bundle');
  mkdirSync(bundle);
  busyboxRootfs(bundle);
  expect((await oci(['spec', '--bundle', bundle])).exitCode).toBe(0);
  const config = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
  config.process.terminal = false;
  config.root.readonly = false;
  config.mounts.push({ destination: '/data', type: 'bind', source: data, options: ['rbind', 'rw'] });
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(config));
  writeFileSync(join(share, 'guest.sh'), [
    `cd ${repoRoot}`,
    'V="node bin/vjail-oci.js --root /run/vjail-oci"',
    `$V restore --detach --image-path ${join(share, 'checkpoint')} --bundle ${bundle} c1 || exit 1`,
    // The counter writes every 50 ms: let it count for a while, then end it.
    `i=0; while [ "$(wc -l < ${join(data, 'log')})" -lt ${lines(saved).length + 20} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done`,
    '$V state c1 | grep -o \'"status": "[a-z]*"\'',
    '$V delete --force c1',
    'uname -r',
  ].join('\n'));
}, 180_000);

afterAll(async () => {
  await podman(['rm', '-f', NAME]);
  await execa('podman', ['rmi', '-f', IMAGE], { reject: false });
  if (share) removeDir(share);
});

describe.each(['6.1', '6.12'] as const)('a podman checkpoint restored by vjail-oci under Linux %s', (kernel) => {
  it('goes on counting from where it was, with the number it drew at start', async () => {
    const log = join(share, 'data', 'log');
    writeFileSync(log, saved);
    const r = await runInKernel({ kernel, argv: ['sh', join(share, 'guest.sh')], shareDir: share, timeoutMs: 400_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(new RegExp(`"status": "running"\\n${kernel.replace('.', '\\.')}\\.`));
    expect(r.exitCode).toBe(0);
    const after = lines(readFileSync(log, 'utf8'));
    expect(after.length).toBeGreaterThanOrEqual(lines(saved).length + 20);
    expect(new Set(after.map(([n]) => n)).size).toBe(1);
    expect(after.map(([, i]) => i)).toEqual(after.map((_, k) => k + 1));
  }, 500_000);
});
