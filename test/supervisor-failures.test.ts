import { describe, expect, it } from 'vitest';
import type { Shim } from '../shims/types.js';
import type { Action, Plan } from '../src/plan/action.js';
import { describeHost } from '../src/plan/host.js';
import { derivePlan } from '../src/plan/plan.js';
import { probeHostSyscalls } from '../src/probe.js';
import { loadProfile } from '../src/profile/load.js';
import { spawnJail } from '../src/index.js';
import { fixture } from './helpers/fixtures.js';

const GETPPID = 110;

/** The host plan with getppid sent to `shim`. */
function planWithShim(shim: string): Plan {
  const { plan } = derivePlan(loadProfile('host'), describeHost(probeHostSyscalls));
  const x86 = plan.arches.find((a) => a.arch === 'x86_64')!;
  const action: Action = { kind: 'notify', shim };
  x86.syscalls = [...x86.syscalls.filter((d) => d.nr !== GETPPID), { nr: GETPPID, name: 'getppid', rules: [], fallback: action }];
  return plan;
}

/** Run `probe syscall 110` under the plan; its stdout and the supervisor's warnings. */
async function getppidUnder(shim: Shim, extra: { shimTimeoutMs?: number; shimErrorErrno?: number } = {}) {
  const warnings: string[] = [];
  const profile = { ...loadProfile('host'), ...(extra.shimErrorErrno ? { shimErrorErrno: extra.shimErrorErrno } : {}) };
  const jail = spawnJail({
    command: [fixture('probe'), 'syscall', String(GETPPID)],
    profile,
    plan: planWithShim(shim.name),
    shims: [shim],
    shimTimeoutMs: extra.shimTimeoutMs,
    warn: (l) => warnings.push(l),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  jail.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  const exit = await jail.exited;
  return { out: out.trim(), warnings, exit };
}

describe('the supervisor when a shim fails', () => {
  it('a shim that throws: one clear line, and the caller gets EIO (never ENOSYS)', async () => {
    const throwing: Shim = { name: 'test-throws', syscalls: [], doc: '', handle: () => { throw new Error('deliberate failure'); } };
    const r = await getppidUnder(throwing);
    expect(r.out).toBe('ret=-1 errno=EIO');
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toMatch(/^shim for getppid failed \(pid \d+\): deliberate failure$/);
    expect(r.exit.status).toBe(0);
  });

  it("the errno is the profile's choice", async () => {
    const rejecting: Shim = { name: 'test-rejects', syscalls: [], doc: '', handle: () => Promise.reject(new Error('async failure')) };
    const r = await getppidUnder(rejecting, { shimErrorErrno: 1 });
    expect(r.out).toBe('ret=-1 errno=EPERM');
    expect(r.warnings[0]).toMatch(/async failure/);
  });

  it('a shim that never answers does not hang the jail: the caller gets the error after the time-out', async () => {
    const silent: Shim = { name: 'test-silent', syscalls: [], doc: '', handle: () => new Promise(() => {}) };
    const r = await getppidUnder(silent, { shimTimeoutMs: 300 });
    expect(r.out).toBe('ret=-1 errno=EIO');
    expect(r.warnings).toEqual([expect.stringMatching(/^shim for getppid did not answer within 300 ms \(pid \d+\)$/)]);
  });
});
