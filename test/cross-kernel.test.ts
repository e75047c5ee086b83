/*
 * An image made on the host moves to real kernels whose ABI differs: the
 * Debian 6.1 and 6.12 kernels booted under qemu (src/vm), two boots. The
 * workload (test/fixtures/xk-workload.c) runs under linux-6.12 and calls
 * cachestat (6.5), fchmodat2 (6.6), futex_wake and futex_wait (6.7):
 *
 *   host  start a and b, checkpoint both
 *   6.1   run the workload bare (the kernel lacks those calls); restore a
 *   6.12  run the workload bare; restore b
 *
 * Hops back to the host and across several kernels are in
 * test/cross-kernel-hops.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureKernel } from '../src/vm/index.js';
import {
  dropShare, expectAllOk, expectConsecutive, inGuest, log, makeShare, NEWER, onHost, read, rounds, roundsOn, status,
} from './helpers/cross-kernel.js';

let release61 = '';
let release612 = '';

beforeAll(async () => {
  release61 = (await ensureKernel('6.1')).release;
  release612 = (await ensureKernel('6.12')).release;
  const share = makeShare(['a', 'b']);
  await onHost(share, 'start a linux-6.12 new img0\nstart b linux-6.12 new img0\n');
  await inGuest(share, '6.1', 'bare new\nbare old\ni386\nhop a img0\n');
  await inGuest(share, '6.12', 'bare new\ni386\nhop b img0\n');
}, 1_200_000);

afterAll(dropShare);

describe('images move from the host to older kernels', () => {
  it('the guests run the kernels they should; 6.1 lacks what the workload calls', () => {
    expect(read('bare-new-6.1', 'release').trim()).toBe(release61);
    expect(read('bare-new-6.12', 'release').trim()).toBe(release612);
    // Without vjail, 6.1 has none of the newer calls and no _sysctl; 6.12 has them all.
    const on61 = rounds('bare-new-6.1');
    expect(on61.length).toBeGreaterThan(0);
    for (const k of NEWER) expect(on61[0]!.fields[k], k).toBe('ENOSYS');
    expect(rounds('bare-old-6.1')[0]?.fields.sysctl).toBe('ENOSYS');
    expectAllOk(rounds('bare-new-6.12'), 'natively on 6.12');
  });

  // The host's kernel may have the i386 entry off (test/run.test.ts); these have it on.
  it.each([['6.1'], ['6.12']])('on %s the i386 entry (int 0x80) is live and planned: uname, olduname and oldolduname show the profile', (kernel) => {
    const release = kernel === '6.1' ? release61 : release612;
    expect(read(`i386-${kernel}`, 'bare').trim()).toBe(release);
    expect(read(`i386-${kernel}`, 'uname').trim()).toBe('4.19.0-27-amd64');
    expect(read(`i386-${kernel}`, 'olduname').trim()).toBe('4.19.0-27-amd64|#1 SMP Debian 4.19.316-1 (2024-06-25)');
    expect(read(`i386-${kernel}`, 'oldolduname').trim()).toBe('4.19.0-27-amd64'.slice(0, 8));
  });

  it.each([['6.1'], ['6.12']])('on %s a policy denying socket and shmget holds on the i386 socketcall and ipc multiplexers', (kernel) => {
    expect(read(`i386-${kernel}`, 'mux-bare').trim()).toBe('ret=0 errno=0\nret=0 errno=0');
    expect(read(`i386-${kernel}`, 'mux').trim()).toBe('ret=-1 errno=1\nret=-1 errno=1');
  });

  it.each([['a', '6.1'], ['b', '6.12']])('host → %s: restored on %s, the counter continues exactly and every call works', (d, kernel) => {
    expect(status(d, 'checkpoint-host'), log(d, 'checkpoint-host')).toBe(0);
    expect(status(d, 'run-host'), log(d, 'run-host')).toBe(137);
    const on = roundsOn(d, kernel);
    expect(on.length, log(d, `restore-${kernel}`)).toBeGreaterThanOrEqual(40);
    expect(on[0]!.n).toBe(Number(read(d, `base-${kernel}`)));
    expect(status(d, `restore-${kernel}`), log(d, `restore-${kernel}`)).toBe(128 + 15);
    expectConsecutive(rounds(d), d);
    // On 6.1 the plan was derived again for a kernel without these calls: their shims answered.
    expectAllOk(on, `restored on ${kernel}`);
    for (const k of NEWER) expect(on.every((r) => r.fields[k] === 'ok'), k).toBe(true);
  });
});
