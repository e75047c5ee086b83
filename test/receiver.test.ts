import { describe, expect, it } from 'vitest';
import type { Shim } from '../shims/types.js';
import type { Action, Plan } from '../src/plan/action.js';
import { describeHost } from '../src/plan/host.js';
import { derivePlan } from '../src/plan/plan.js';
import { probeHostSyscalls } from '../src/probe.js';
import { loadProfile } from '../src/profile/load.js';
import { spawnJail, type ReceiverMode } from '../src/index.js';
import { fixture } from './helpers/fixtures.js';

/**
 * Who receives notifications: the native thread, the Node loop, or (auto)
 * whichever suits the calls being made. Every mode must give every caller
 * its answer exactly once, with several threads calling at once.
 */

const GETPPID = 110; // sent to a JavaScript shim
const GETUID = 102; // answered natively (a fixed value)

function planFor(shim: string): Plan {
  const { plan } = derivePlan(loadProfile('host'), describeHost(probeHostSyscalls));
  const x86 = plan.arches.find((a) => a.arch === 'x86_64')!;
  const toShim: Action = { kind: 'notify', shim };
  const fixed: Action = { kind: 'notify', answer: { kind: 'value', value: 777n } };
  x86.syscalls = [
    ...x86.syscalls.filter((d) => d.nr !== GETPPID && d.nr !== GETUID),
    { nr: GETPPID, name: 'getppid', rules: [], fallback: toShim },
    { nr: GETUID, name: 'getuid', rules: [], fallback: fixed },
  ];
  return plan;
}

const syncShim: Shim = { name: 'test-getppid', syscalls: [], doc: '', handle: () => ({ kind: 'value', value: 4242n }) };
/** Answers on a later turn of the loop, so callers wait on each other's answers. */
const laterShim: Shim = {
  name: 'test-getppid-later',
  syscalls: [],
  doc: '',
  handle: () => new Promise((resolve) => setImmediate(() => resolve({ kind: 'value', value: 4343n }))),
};

async function run(receiver: ReceiverMode, shim: Shim, args: string[]) {
  const warnings: string[] = [];
  const jail = spawnJail({
    command: [fixture('probe'), 'repeat', ...args],
    profile: loadProfile('host'),
    plan: planFor(shim.name),
    shims: [shim],
    receiver,
    warn: (l) => warnings.push(l),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  jail.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  const exit = await jail.exited;
  await new Promise<void>((r) => (jail.stdout?.readableEnded ? r() : jail.stdout?.once('end', () => r())));
  return { lines: out.trim().split('\n'), exit, warnings, state: jail.receiverState()! };
}

describe('notification receivers', () => {
  for (const receiver of ['thread', 'loop', 'auto'] as const) {
    it(`${receiver}: 4 threads, JavaScript answers then native answers, each call answered once`, async () => {
      const r = await run(receiver, syncShim, ['4', String(GETPPID), '500', String(GETUID), '500']);
      expect(r.exit.status).toBe(0);
      expect(r.warnings).toEqual([]);
      expect(r.lines).toEqual([`nr=${GETPPID} calls=2000 ret=4242 same=yes`, `nr=${GETUID} calls=2000 ret=777 same=yes`]);
      expect(r.state.toJs).toBe(2000);
      expect(r.state.answeredNatively).toBeGreaterThanOrEqual(2000);
      if (receiver === 'auto') {
        // Moved to the loop for the JavaScript calls, back to the thread for the native ones.
        expect(r.state.switches).toBeGreaterThanOrEqual(2);
        expect(r.state.receiver).toBe('thread');
      } else {
        expect(r.state.switches).toBe(0);
        expect(r.state.receiver).toBe(receiver);
      }
    });
  }

  it('auto: a jail making only native calls never leaves the thread', async () => {
    const r = await run('auto', syncShim, ['2', String(GETUID), '2000']);
    expect(r.lines).toEqual([`nr=${GETUID} calls=4000 ret=777 same=yes`]);
    expect(r.state).toMatchObject({ receiver: 'thread', switches: 0, toJs: 0 });
  });

  it('auto: a jail making only JavaScript calls ends on the loop', async () => {
    const r = await run('auto', syncShim, ['2', String(GETPPID), '1000']);
    expect(r.lines).toEqual([`nr=${GETPPID} calls=2000 ret=4242 same=yes`]);
    expect(r.state).toMatchObject({ receiver: 'loop', switches: 1, toJs: 2000 });
  });

  for (const receiver of ['loop', 'auto'] as const) {
    it(`${receiver}: answers given on a later turn of the loop, while other callers are received`, async () => {
      const r = await run(receiver, laterShim, ['8', String(GETPPID), '200', String(GETUID), '200']);
      expect(r.exit.status).toBe(0);
      expect(r.lines).toEqual([`nr=${GETPPID} calls=1600 ret=4343 same=yes`, `nr=${GETUID} calls=1600 ret=777 same=yes`]);
      expect(r.state.toJs).toBe(1600);
    });
  }
});
