/**
 * A restorer started before its image came (a migration's receiver starts
 * one at the handshake): the restore takes it only when it was started as
 * the image's manifest asks, and otherwise ends it and starts its own.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { restore } from '../src/checkpoint/restore.js';
import { prelaunchRestorer, type RestorerLaunch } from '../src/checkpoint/restorer-launch.js';
import { bigmemImage, ourRestorers, runsRestorer } from './helpers/restorers.js';
import { openImage } from '../src/image/format.js';
import { waitFor } from './helpers/run.js';

const MIB = 8;
let image: string;
let workDir: string;
let asked: RestorerLaunch;
const STDIO: RestorerLaunch['stdio'] = ['ignore', 'ignore', 'ignore'];

/** The one restorer started in advance, once it runs. */
async function startedRestorer(): Promise<number> {
  expect(await waitFor(() => ourRestorers().length === 1, 30_000)).toBe(true);
  return ourRestorers()[0]!;
}

/** Restore with `prelaunched`, let the workload hash its memory, and check it is what was saved. */
async function restoreAndCheck(prelaunched: ReturnType<typeof prelaunchRestorer>): Promise<number> {
  rmSync(join(workDir, 'after'), { force: true });
  const jail = await restore({ image, stdio: STDIO, warn: () => {}, prelaunched });
  writeFileSync(join(workDir, 'go'), '');
  const exit = await jail.exited;
  expect(exit.status).toBe(0);
  expect(readFileSync(join(workDir, 'after'), 'utf8')).toBe(readFileSync(join(workDir, 'before'), 'utf8'));
  return jail.pid;
}

beforeAll(async () => {
  ({ dir: workDir, image } = await bigmemImage('vjail-prelaunch-', MIB));
  const m = openImage(image).manifest;
  asked = { profile: m.profile, policy: undefined, emulate: m.emulate, pidNs: m.pidNamespace, userNs: m.userNamespace ?? undefined, cgroup: undefined, timeOffsets: undefined, stdio: STDIO };
});

describe('a restorer started before the image came', () => {
  it('started as the image asks, it is the process restored', async () => {
    const pre = prelaunchRestorer(asked);
    const early = await startedRestorer();
    expect(await restoreAndCheck(pre)).toBe(early);
    await pre.discard(); // taken: nothing of it is left to end
    expect(ourRestorers()).toEqual([]);
  });

  it('started under another profile, it is ended and the image restored in a jail of its own', async () => {
    const pre = prelaunchRestorer({ ...asked, profile: asked.profile === 'linux-4.19' ? 'linux-5.10' : 'linux-4.19' });
    const early = await startedRestorer();
    const pid = await restoreAndCheck(pre);
    expect(pid).not.toBe(early);
    expect(runsRestorer(early)).toBe(false);
  });

  it('started in another PID namespace layout or with other emulations, it is not taken either', async () => {
    for (const other of [{ ...asked, pidNs: !asked.pidNs }, { ...asked, emulate: [...asked.emulate, 'clone3'] }]) {
      const pre = prelaunchRestorer(other);
      const early = await startedRestorer();
      expect(await restoreAndCheck(pre)).not.toBe(early);
      expect(runsRestorer(early)).toBe(false);
    }
  });

  it('no image comes: discarding it ends its jail and leaves no restorer', async () => {
    const pre = prelaunchRestorer(asked);
    const early = await startedRestorer();
    await pre.discard();
    expect(runsRestorer(early)).toBe(false);
    expect(ourRestorers()).toEqual([]);
  });
});
