import { readFileSync, writeFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixture } from './helpers/fixtures.js';
import { vjail } from './helpers/run.js';

/*
 * Where the jail must hold as a boundary: what a jailed process, a hostile
 * input file or a long-lived library user can make vjail do.
 */

let kernelinfo: string;

beforeAll(() => {
  kernelinfo = fixture('kernelinfo');
});

const MSGMAX = '/proc/sys/kernel/msgmax';
const asNobody = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups'];

describe('_sysctl writes with the caller\'s credentials', () => {
  it('nobody is refused with EACCES and the host value is unchanged; root in the jail may write', async () => {
    // kernel.msgmax (1.35): harmless to change for a moment, put back below.
    const before = readFileSync(MSGMAX, 'utf8').trim();
    const other = String(Number(before) - 1);
    try {
      const nobody = await vjail(['run', '--profile', 'linux-4.19', '--', ...asNobody, kernelinfo, 'sysctl-set', '1', '35', other]);
      expect(nobody.stdout).toBe('errno=EACCES');
      expect(readFileSync(MSGMAX, 'utf8').trim()).toBe(before);
      const root = await vjail(['run', '--profile', 'linux-4.19', '--', kernelinfo, 'sysctl-set', '1', '35', other]);
      expect(root.stdout).toBe('ok');
      expect(readFileSync(MSGMAX, 'utf8').trim()).toBe(other);
    } finally {
      writeFileSync(MSGMAX, `${before}\n`);
    }
  });
});
