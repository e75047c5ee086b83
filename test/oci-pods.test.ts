/**
 * Containers that share a PID namespace under vjail-oci: `podman run --pid
 * container:NAME` and a pod whose infra container holds the namespaces
 * (linux.namespaces entries with a path, joined by the setup). podman's
 * infra image is built locally from Debian's catatonit.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importBusyboxImage, podman, podmanRunFlags, removeDir } from './helpers/oci.js';

const IMAGE = `localhost/vjail-oci-pods-${process.pid}`;
const first = `vjail-pid-first-${process.pid}`;
const pod = `vjail-pod-${process.pid}`;
let confDir = '';

beforeAll(async () => {
  await importBusyboxImage(IMAGE);
  // `pod create` takes no --ulimit: its infra container gets the same limits from a containers.conf of the test's own.
  confDir = mkdtempSync(join(tmpdir(), 'vjail-pods-conf-'));
  const limits = podmanRunFlags().filter((f) => f !== '--ulimit').map((l) => JSON.stringify(l));
  writeFileSync(join(confDir, 'containers.conf'), `[containers]\ndefault_ulimits = [${limits.join(', ')}]\n`);
  process.env.CONTAINERS_CONF = join(confDir, 'containers.conf');
}, 120_000);

afterAll(async () => {
  await podman(['pod', 'rm', '-f', pod]);
  await podman(['rm', '-f', first]);
  await execa('podman', ['rmi', '-f', IMAGE], { reject: false });
  delete process.env.CONTAINERS_CONF;
  removeDir(confDir);
}, 120_000);

/** The commands ps shows in a container's PID namespace, vjail-init's lines left out. */
async function commands(args: string[]): Promise<string[]> {
  const r = await podman(['run', '--rm', ...args, IMAGE, 'ps', '-o', 'args']);
  expect(r.stderr).toBe('');
  expect(r.exitCode).toBe(0);
  return r.stdout.split('\n').slice(1).filter((l) => l && !l.includes('vjail-init'));
}

describe('a PID namespace shared between containers', { timeout: 180_000 }, () => {
  it('--pid container:NAME sees the other container\'s processes; exit status and stop are its own', async () => {
    expect((await podman(['run', '-d', '--name', first, IMAGE, 'sleep', '1001'])).exitCode).toBe(0);
    expect(await commands(['--pid', `container:${first}`])).toEqual(['sleep 1001', 'ps -o args']);
    expect((await podman(['run', '--rm', '--pid', `container:${first}`, IMAGE, 'sh', '-c', 'exit 7'])).exitCode).toBe(7);
    // A second, detached member stopped on its own: the first runs on.
    const second = `${first}-b`;
    expect((await podman(['run', '-d', '--name', second, '--pid', `container:${first}`, IMAGE, 'sleep', '1002'])).exitCode).toBe(0);
    // Neither can be checkpointed alone: the other's processes share the namespace. Both run on.
    for (const name of [first, second]) {
      const refused = await podman(['container', 'checkpoint', name]);
      expect(refused.exitCode).not.toBe(0);
      expect(refused.stderr).toMatch(/processes it did not start share its PID namespace/);
    }
    expect(await commands(['--pid', `container:${first}`])).toEqual(['sleep 1001', 'sleep 1002', 'ps -o args']);
    expect((await podman(['stop', '-t', '5', second])).exitCode).toBe(0);
    expect((await podman(['inspect', '-f', '{{.State.ExitCode}}', second])).stdout).toBe('143');
    await podman(['rm', '-f', second]);
    expect((await podman(['inspect', '-f', '{{.State.Status}}', first])).stdout).toBe('running');
    expect(await commands(['--pid', `container:${first}`])).toEqual(['sleep 1001', 'ps -o args']);
  });

  it('a pod sharing pid, ipc, uts and net: its containers see one another and its host name; pod stop ends them all', async () => {
    const created = await podman(['pod', 'create', '--name', pod, '--share', 'pid,ipc,uts,net', '--hostname', 'podhost']);
    expect(created.stderr).toBe('');
    expect(created.exitCode).toBe(0);
    expect((await podman(['run', '-d', '--pod', pod, '--name', `${pod}-worker`, IMAGE, 'sleep', '1003'])).exitCode).toBe(0);
    // The infra container's catatonit is the namespace's first process.
    expect(await commands(['--pod', pod])).toEqual(['/catatonit -P', 'sleep 1003', 'ps -o args']);
    expect((await podman(['run', '--rm', '--pod', pod, IMAGE, 'hostname'])).stdout).toBe('podhost');
    expect((await podman(['pod', 'stop', '-t', '5', pod])).exitCode).toBe(0);
    // The worker ends by SIGTERM, or by SIGKILL when the namespace's first process (infra) goes first, as the kernel does.
    const states = await podman(['ps', '-a', '--filter', `pod=${pod}`, '--format', '{{.Names}} {{.Status}}']);
    expect(states.stdout.split('\n').sort()).toEqual([
      expect.stringMatching(/^\S+-infra Exited \(0\) /),
      expect.stringMatching(new RegExp(`^${pod}-worker Exited \\((143|137)\\) `)),
    ]);
    expect((await podman(['pod', 'rm', '-f', pod])).exitCode).toBe(0);
  });
});
