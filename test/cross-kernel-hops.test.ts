/*
 * Images made inside a guest kernel restored on the host, and one image
 * hopping host → 6.1 → 6.12 → host (two boots, see test/cross-kernel.test.ts
 * for the steps and the workload):
 *
 *   host  start s3 (linux-6.12, calls newer than 6.1), checkpoint   -> s3/img0
 *   6.1   restore s3/img0, count on, checkpoint                     -> s3/img1
 *         start s2 (linux-4.19, _sysctl), checkpoint                -> s2/img0
 *   6.12  restore s3/img1, count on, checkpoint                     -> s3/img2
 *   host  restore s3/img2 and s2/img0 and count on
 *
 * The guests' CPU (qemu's "max") has MPX and PKU, this host neither: the
 * images carry those components at their initial values, which restore
 * leaves out (src/checkpoint/cpu.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureKernel } from '../src/vm/index.js';
import {
  dropShare, expectAllOk, expectConsecutive, inGuest, log, makeShare, onHost, read, rounds, roundsOn, status, TIME,
} from './helpers/cross-kernel.js';

const RELEASE_419 = '4.19.0-27-amd64';

beforeAll(async () => {
  await ensureKernel('6.1');
  await ensureKernel('6.12');
  const share = makeShare(['s2', 's3']);
  await onHost(share, 'start s3 linux-6.12 new img0\n');
  await inGuest(share, '6.1', 'hop s3 img0 img1\nstart s2 linux-4.19 old img0\n');
  await inGuest(share, '6.12', 'hop s3 img1 img2\n');
  await onHost(share, 'hop s3 img2\nhop s2 img0\n');
}, 1_200_000);

afterAll(dropShare);

describe('images move from guests to the host, and across several kernels', () => {
  it('6.1 → host: an image made under linux-4.19 inside 6.1 keeps calling _sysctl and the vDSO on the host', () => {
    const s2 = rounds('s2');
    expect(status('s2', 'checkpoint-6.1'), log('s2', 'checkpoint-6.1')).toBe(0);
    expect(status('s2', 'run-6.1'), log('s2', 'run-6.1')).toBe(137);
    const before = s2.slice(0, Number(read('s2', 'base-host')) || s2.length);
    expect(before.length).toBeGreaterThanOrEqual(40);
    expectAllOk(before, 'under linux-4.19 on 6.1', RELEASE_419);
    const onHost = roundsOn('s2', 'host');
    expect(onHost.length, log('s2', 'restore-host')).toBeGreaterThanOrEqual(40);
    expect(status('s2', 'restore-host'), log('s2', 'restore-host')).toBe(128 + 15);
    expectConsecutive(s2, 's2');
    expectAllOk(onHost, 'restored on the host', RELEASE_419);
    for (const k of TIME) expect(onHost.every((r) => r.fields[k] === 'ok'), k).toBe(true);
  });

  it('host → 6.1 → 6.12 → host: one image, checkpointed again at each hop, counts on without a gap', () => {
    for (const k of ['host', '6.1', '6.12']) expect(status('s3', `checkpoint-${k}`), log('s3', `checkpoint-${k}`)).toBe(0);
    for (const k of ['6.1', '6.12']) expect(status('s3', `restore-${k}`), log('s3', `restore-${k}`)).toBe(137);
    const hops: [string, string | undefined][] = [['6.1', '6.12'], ['6.12', 'host'], ['host', undefined]];
    for (const [k, next] of hops) {
      const r = roundsOn('s3', k, next);
      expect(r.length, log('s3', `restore-${k}`)).toBeGreaterThanOrEqual(40);
      expectAllOk(r, `restored on ${k}`);
    }
    expect(status('s3', 'restore-host'), log('s3', 'restore-host')).toBe(128 + 15);
    expectConsecutive(rounds('s3'), 's3');
  });
});
