import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { entryPath, readCached, writeCached } from '../src/cache.js';
import { lazyModule, requireCached } from '../src/cli/code-cache.js';
import { planJail } from '../src/jail.js';
import { cachedPlan, decodePlanned, encodePlanned, type Planned, planInputs } from '../src/plan/cache.js';
import { forgetProfilesValidatedHere, loadProfile } from '../src/profile/load.js';
import { probeHostSyscalls } from '../src/probe.js';
import { execa } from 'execa';
import { vjailBin } from './helpers/fixtures.js';
import { vjail } from './helpers/run.js';

/*
 * The caches behind vjail's start-up (src/cache.ts): validated profiles,
 * probe results, plans with their filters, and V8's code for the bundled
 * CLI. Each must give what computing afresh gives: a changed input is a
 * miss, and a damaged entry is never used.
 */

const root = mkdtempSync(join(tmpdir(), 'vjail-cache-test-'));
let n = 0;
/** A fresh cache directory for each test, so no test sees another's entries. */
let cache = '';
beforeEach(() => {
  cache = join(root, `cache-${n++}`);
  process.env.VJAIL_CACHE_DIR = cache;
});
afterAll(() => {
  delete process.env.VJAIL_CACHE_DIR;
  rmSync(root, { recursive: true, force: true });
});

/** Every file of one kind of entry in the current cache directory. */
function entries(kind: string): string[] {
  try {
    return readdirSync(join(cache, kind)).map((f) => join(cache, kind, f));
  } catch {
    return [];
  }
}

function file(name: string, text: string): string {
  const p = join(root, `${n}-${name}`);
  writeFileSync(p, text);
  return p;
}

describe('cache entries', () => {
  const asNumber = (v: unknown) => (typeof v === 'number' ? v : undefined);

  it('are hits only for the very inputs they were computed from', () => {
    writeCached('k', 'slot', 'inputs A', 1);
    expect(readCached('k', 'slot', 'inputs A', asNumber)).toBe(1);
    // Same slot (same file), other inputs: a miss, never the value for A.
    expect(readCached('k', 'slot', 'inputs B', asNumber)).toBeUndefined();
    writeCached('k', 'slot', 'inputs B', 2);
    expect(readCached('k', 'slot', 'inputs A', asNumber)).toBeUndefined();
    expect(readCached('k', 'slot', 'inputs B', asNumber)).toBe(2);
  });

  it('that are damaged or of the wrong shape are misses', () => {
    writeCached('k', 'slot', 'in', 1);
    const p = entryPath('k', 'slot');
    const whole = readFileSync(p, 'utf8');
    for (const bad of [whole.slice(0, whole.length - 3), '', 'not json', 'null', '[]', '{"inputs":"in"}', '{"inputs":"in","value":"1"}']) {
      writeFileSync(p, bad);
      expect(readCached('k', 'slot', 'in', asNumber)).toBeUndefined();
    }
  });

  it('that cannot be written leave vjail only slower', async () => {
    // mkdir under /proc fails with ENOENT however often it is tried.
    process.env.VJAIL_CACHE_DIR = '/proc/vjail-no-such-dir/cache';
    writeCached('k', 'slot', 'in', 1);
    expect(readCached('k', 'slot', 'in', (v) => v)).toBeUndefined();
    const r = await vjail(['run', '--profile', 'linux-4.19', '--', 'uname', '-r']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^4\.19\./);
  });

  it('are written whole: no temporary files are left behind', () => {
    for (let i = 0; i < 5; i++) writeCached('k', `slot${i}`, 'in', i);
    expect(entries('k').filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(entries('k')).toHaveLength(5);
  });
});

describe('plan cache', () => {
  const profile = loadProfile('linux-4.19');
  let derived = 0;
  /** What planJail derives without a cache, counting how often it runs. */
  const derive = (opts: { policy?: string; emulate?: string[]; profile?: typeof profile }) => (): Planned => {
    derived++;
    const { plan, warnings, filter } = planJail({ ...opts, profile: opts.profile ?? profile });
    return { plan, warnings, filter };
  };
  beforeEach(() => {
    derived = 0;
  });

  it('plans nothing without a code version (code not from the bundle)', () => {
    expect(planInputs({ profile }, undefined)).toBeUndefined();
    cachedPlan({ profile }, derive({}), undefined);
    cachedPlan({ profile }, derive({}), undefined);
    expect(derived).toBe(2);
    expect(entries('plans')).toEqual([]);
  });

  it('gives back exactly what was derived', () => {
    const policy = join(__dirname, 'fixtures', 'policies', 'docker-default.json');
    const fresh = derive({ policy, emulate: ['statx'] })();
    const first = cachedPlan({ profile, policy, emulate: ['statx'] }, derive({ policy, emulate: ['statx'] }), 'code-1');
    const again = cachedPlan({ profile, policy, emulate: ['statx'] }, derive({ policy, emulate: ['statx'] }), 'code-1');
    expect(derived).toBe(2); // `fresh`, then the miss; the third is a hit
    expect(again).toEqual(fresh);
    expect(first).toEqual(fresh);
    expect(again.filter.equals(fresh.filter)).toBe(true);
    // The plan has struct answers (uname), bigints (rule values) and warnings to carry.
    expect(JSON.stringify(encodePlanned(fresh))).toContain('"struct"');
    expect(decodePlanned(encodePlanned(fresh))).toEqual(fresh);
  });

  it('misses when any input changes', () => {
    const policyA = file('a.json', JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [] }));
    const run = (o: { policy?: string; emulate?: string[]; profile?: typeof profile }, code = 'code-1') =>
      cachedPlan({ profile: o.profile ?? profile, policy: o.policy, emulate: o.emulate }, derive(o), code);
    run({ policy: policyA });
    run({ policy: policyA });
    expect(derived).toBe(1);

    // The policy file's text changes, same path: the new policy is enforced.
    writeFileSync(policyA, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ERRNO' }] }));
    const changed = run({ policy: policyA });
    expect(derived).toBe(2);
    const mkdir = changed.plan.arches[0].syscalls.find((d) => d.name === 'mkdir');
    expect(mkdir?.fallback).toEqual({ kind: 'errno', errno: 1 });

    // Another profile (a changed uname in the same named profile looks the same to the cache).
    const other = { ...profile, uname: { ...profile.uname, release: '4.19.0-99-test' } };
    const renamed = run({ policy: policyA, profile: other });
    expect(derived).toBe(3);
    const uname = renamed.plan.arches[0].syscalls.find((d) => d.name === 'uname')?.fallback;
    expect(uname?.kind === 'notify' && 'answer' in uname && uname.answer.kind === 'struct' && Buffer.from(uname.answer.bytes).toString('latin1')).toContain('4.19.0-99-test');

    run({ policy: policyA, emulate: ['statx'] });
    expect(derived).toBe(4);
    run({ policy: policyA }, 'code-2');
    expect(derived).toBe(5);
  });

  it('misses for an entry made on another boot, kernel or host name, or with other syscall tables', () => {
    cachedPlan({ profile }, derive({}), 'code-1');
    const [entry] = entries('plans');
    const stored = JSON.parse(readFileSync(entry, 'utf8')) as { inputs: string; value: unknown };
    const inputs = JSON.parse(stored.inputs) as unknown[];
    // The inputs as planInputs lays them out: ..., capabilities, release, version, boot, tables, host name.
    expect(inputs).toHaveLength(12);
    for (const i of [7, 8, 9, 10, 11]) {
      const altered = [...inputs];
      altered[i] = `${String(altered[i])}-other`;
      writeFileSync(entry, JSON.stringify({ ...stored, inputs: JSON.stringify(altered) }));
      derived = 0;
      cachedPlan({ profile }, derive({}), 'code-1');
      expect(derived).toBe(1);
    }
  });

  it('never uses a damaged entry', () => {
    const fresh = cachedPlan({ profile }, derive({}), 'code-1');
    const [entry] = entries('plans');
    const good = readFileSync(entry, 'utf8');
    const stored = JSON.parse(good) as { inputs: string; value: { filter: string; plan: { arches: { syscalls: unknown[] }[] } } };
    /** The stored plan with the first architecture's decisions replaced: everything else valid. */
    const withDecisions = (syscalls: unknown[]) =>
      JSON.stringify({ ...stored, value: { ...stored.value, plan: { ...stored.value.plan, arches: [{ ...stored.value.plan.arches[0], syscalls }] } } });
    // The replacement itself is accepted when valid, so the cases below fail for their one fault.
    writeFileSync(entry, withDecisions([[0, 'read'], [1, 'write', { kind: 'errno', errno: 1 }]]));
    expect(cachedPlan({ profile }, derive({}), 'code-1').plan.arches[0].syscalls).toEqual([
      { nr: 0, name: 'read', rules: [], fallback: { kind: 'allow' } },
      { nr: 1, name: 'write', rules: [], fallback: { kind: 'errno', errno: 1 } },
    ]);
    const damaged = [
      good.slice(0, good.length / 2),
      JSON.stringify({ ...stored, value: { ...stored.value, filter: `${stored.value.filter.slice(0, -4)}!!!!` } }),
      JSON.stringify({ ...stored, value: { ...stored.value, filter: stored.value.filter.slice(0, 8) } }),
      withDecisions([[0, 'read', { kind: 'allow-ish' }]]),
      withDecisions([[-1, 'read']]),
      withDecisions([[0, 'read', { kind: 'errno', errno: 1 }, [{ conditions: [{ index: 6, op: 'eq', value: '1' }], action: { kind: 'allow' } }]]]),
      good.replace('"kind":"value","value":"', '"kind":"value","value":"-'),
    ];
    for (const text of damaged) {
      writeFileSync(entry, text);
      derived = 0;
      expect(cachedPlan({ profile }, derive({}), 'code-1')).toEqual(fresh);
      expect(derived).toBe(1);
    }
  });
});

describe('profile and probe caches', () => {
  it('a damaged validated profile is validated again', () => {
    // The disk cache is for the next process: this one's own memory of the profile is set aside.
    forgetProfilesValidatedHere();
    const fresh = loadProfile('linux-4.19');
    const [entry] = entries('profiles');
    const stored = JSON.parse(readFileSync(entry, 'utf8')) as { inputs: string; value: Record<string, unknown> };
    writeFileSync(entry, JSON.stringify({ ...stored, value: { ...stored.value, isHost: 'no', uname: null } }));
    forgetProfilesValidatedHere();
    expect(loadProfile('linux-4.19')).toEqual(fresh);
  });

  it('damaged probe results are probed again', () => {
    const names = ['statx', 'clone3', 'close_range', 'futex_waitv', 'cachestat'];
    const fresh = probeHostSyscalls(names);
    const [entry] = entries('probes');
    const stored = JSON.parse(readFileSync(entry, 'utf8')) as { inputs: string; value: number[] };
    for (const value of [['x'], [1.5, 0], 'none', Array(99).fill(0)]) {
      writeFileSync(entry, JSON.stringify({ ...stored, value }));
      expect(probeHostSyscalls(names)).toEqual(fresh);
    }
    // An entry that says otherwise for the same inputs would be used: this
    // shows the test reads the entry at all.
    writeFileSync(entry, JSON.stringify({ ...stored, value: stored.value.map(() => -38) }));
    expect([...probeHostSyscalls(names).values()].every((has) => !has)).toBe(true);
  });
});

describe('code cache', () => {
  /** Files whose ctime is settled (code is cached only for those: see SETTLED_MS). */
  const settledFiles = async (...texts: [string, string][]) => {
    const paths = texts.map(([name, text]) => file(name, text));
    await new Promise((r) => setTimeout(r, 2100));
    return paths;
  };

  it('runs the current file, never code cached from another of the same length', async () => {
    const [mod] = await settledFiles(['mod.cjs', "module.exports = () => 'aaaa';"]);
    const first = requireCached<() => string>(mod, 'test', createRequire);
    expect(first.hit).toBe(false);
    expect(first.exports()).toBe('aaaa');
    first.save();
    const second = requireCached<() => string>(mod, 'test', createRequire);
    expect(second.hit).toBe(true);
    expect(second.exports()).toBe('aaaa');
    // Same length, other code: V8 alone would accept the old cache.
    writeFileSync(mod, "module.exports = () => 'bbbb';");
    const changed = requireCached<() => string>(mod, 'test', createRequire);
    expect(changed.hit).toBe(false);
    expect(changed.exports()).toBe('bbbb');
    // Just written: not cached yet (its ctime could still be shared with a next write).
    changed.save();
    expect(requireCached<() => string>(mod, 'test', createRequire).hit).toBe(false);
  });

  it('a damaged cache file is not used', async () => {
    const [mod] = await settledFiles(['mod2.cjs', 'exports.f = (x) => x * 2;']);
    requireCached<{ f: (x: number) => number }>(mod, 'test', createRequire).save();
    const [entry] = entries('code');
    const good = readFileSync(entry);
    for (const bad of [good.subarray(0, 40), good.subarray(0, good.length - 16), Buffer.from('garbage')]) {
      writeFileSync(entry, bad);
      const loaded = requireCached<{ f: (x: number) => number }>(mod, 'test', createRequire);
      expect(loaded.exports.f(21)).toBe(42);
    }
  });

  it('a lazily loaded module behaves as the module', () => {
    let loads = 0;
    const real = { answer: 42, twice: (x: number) => x * 2 };
    const lazy = lazyModule(() => {
      loads++;
      return real;
    }) as typeof real;
    expect(loads).toBe(0);
    expect(lazy.twice(4)).toBe(8);
    expect(loads).toBe(1);
    expect('answer' in lazy).toBe(true);
    expect(Object.keys(lazy)).toEqual(['answer', 'twice']);
    expect(Object.getOwnPropertyDescriptor(lazy, 'answer')?.value).toBe(42);
    expect(loads).toBe(1);
    // A property known in advance is given without loading; anything else loads.
    let loaded = false;
    const withKnown = lazyModule(() => ((loaded = true), real), { twice: real.twice }) as typeof real;
    expect(withKnown.twice).toBe(real.twice);
    expect(loaded).toBe(false);
    expect(withKnown.answer).toBe(42);
    expect(loaded).toBe(true);
  });
});

describe('vjail run with caches', () => {
  it('a changed profile file is presented, not the plan cached for the old one', async () => {
    const base = JSON.parse(readFileSync(join(__dirname, '..', 'profiles', 'linux-4.19.json'), 'utf8')) as { uname: { release: string } };
    const profileFile = file('p.json', JSON.stringify(base));
    const run = () => vjail(['run', '--profile', profileFile, '--', 'uname', '-r']);
    expect((await run()).stdout).toBe(base.uname.release);
    expect((await run()).stdout).toBe(base.uname.release);
    expect(entries('plans')).toHaveLength(1);
    writeFileSync(profileFile, JSON.stringify({ ...base, uname: { ...base.uname, release: '4.19.0-1-changed' } }));
    expect((await run()).stdout).toBe('4.19.0-1-changed');
  });

  it('a changed policy file is enforced, not the plan cached for the old one', async () => {
    const policy = file('pol.json', JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [] }));
    const dir = join(root, `${n}-made`);
    const run = () => vjail(['run', '--policy', policy, '--', 'mkdir', dir]);
    expect((await run()).exitCode).toBe(0);
    rmSync(dir, { recursive: true });
    expect((await run()).exitCode).toBe(0);
    rmSync(dir, { recursive: true });
    writeFileSync(policy, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO' }] }));
    const denied = await run();
    expect(denied.exitCode).not.toBe(0);
    expect(denied.stderr).toMatch(/Operation not permitted/);
  });

  // A UTS namespace of its own needs root; there vjail runs with another host name and the same everything else.
  it.skipIf(process.geteuid?.() !== 0)('a changed host name is presented, not the one in the plan cached before', async () => {
    const inNamespace = (name: string) =>
      execa('unshare', ['--uts', 'sh', '-c', `hostname ${name} && exec node "$0" run --profile linux-4.19 -- uname -n`, vjailBin], { reject: false });
    expect((await inNamespace('vjail-test-one')).stdout).toBe('vjail-test-one');
    expect((await inNamespace('vjail-test-two')).stdout).toBe('vjail-test-two');
    expect(entries('plans')).toHaveLength(1);
  });

  it('runs correctly from a cache whose every file is damaged, and repairs it', async () => {
    const run = () => vjail(['run', '--profile', 'linux-4.19', '--', 'uname', '-r']);
    const want = (await run()).stdout;
    expect(want).toMatch(/^4\.19\./);
    expect(entries('code').length + entries('plans').length + entries('profiles').length).toBeGreaterThanOrEqual(3);
    for (const kind of ['code', 'plans', 'profiles', 'probes']) for (const f of entries(kind)) writeFileSync(f, 'x'.repeat(100));
    const r = await run();
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe(want);
    for (const kind of ['plans', 'profiles']) for (const f of entries(kind)) expect(() => JSON.parse(readFileSync(f, 'utf8'))).not.toThrow();
    for (const f of entries('code')) expect(readFileSync(f).subarray(0, 16).toString()).toBe('vjail code cache');
  });
});
