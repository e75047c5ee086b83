import { statSync } from 'node:fs';
import { POLICY_MAX_BYTES, readUserFile } from '../input.js';
import { hostname, release, version } from 'node:os';
import { buildId, readCached, writeCached } from '../cache.js';
import { dataPath } from '../paths.js';
import { bootId } from '../probe.js';
import type { Profile } from '../profile/types.js';
import { type Action, ALLOW, type ArchName, type ArchPlan, type ArgCondition, type CompareOp, type NativeAnswer, type Plan, type Rule, type SyscallDecision } from './action.js';

/*
 * Plans, with their warnings and compiled filter, cached per inputs: `vjail
 * run` then neither probes, nor loads the syscall tables, nor compiles BPF.
 * The inputs are everything a plan is derived from: the validated profile,
 * the policy file's path and text, --emulate, whether kernel files are
 * mounted, the jail's capabilities (a policy's conditions name them), the running kernel (release, version, this boot: what the probe
 * found), the host name (uname's answer holds it), the syscall tables'
 * files, and the code itself (the bundle's build id). Code that has no build id (run from dist/src or by tests) plans every
 * time.
 */

/** What planJail hands back. */
export interface Planned {
  plan: Plan;
  warnings: string[];
  filter: Buffer;
}

export interface PlanInputs {
  profile: Profile;
  /** A policy file's path (its text is read here); an already loaded policy is not cacheable. */
  policy?: string | object;
  emulate?: string[];
  kernelFilesMounted?: boolean;
  /** The capabilities the jail holds: a policy's capability conditions depend on them. */
  capabilities?: readonly string[];
}

/** The stat of the syscall tables: changed tables change every plan. */
function tablesStamp(): string {
  return (['x86_64', 'i386'] as const)
    .map((arch) => {
      const s = statSync(dataPath('profiles', 'syscalls', `${arch}.json`));
      return `${s.ino}:${s.size}:${s.mtimeMs}`;
    })
    .join(' ');
}

/** The serialised inputs of a plan, or undefined where it cannot be cached. */
export function planInputs(opts: PlanInputs, code: string | undefined = buildId): string | undefined {
  if (code === undefined || (opts.policy !== undefined && typeof opts.policy !== 'string')) return undefined;
  const boot = bootId();
  if (boot === undefined) return undefined;
  let policyText: string | null = null;
  try {
    if (opts.policy !== undefined) {
      policyText = readUserFile(opts.policy, POLICY_MAX_BYTES, (why) => {
        throw new Error(why);
      });
    }
    return JSON.stringify([
      code,
      opts.profile,
      opts.policy ?? null,
      policyText,
      opts.emulate ?? [],
      opts.kernelFilesMounted ?? false,
      opts.capabilities ?? null,
      release(),
      version(),
      boot,
      tablesStamp(),
      // Where the profile has no nodename, uname's answer in the plan holds the host name.
      hostname(),
    ]);
  } catch {
    // An unreadable policy (deriving reports it) or tables: plan without the cache.
    return undefined;
  }
}

/** The plan for these inputs from the cache, or derived by `derive` (and cached). */
export function cachedPlan(opts: PlanInputs, derive: () => Planned, code: string | undefined = buildId): Planned {
  const inputs = planInputs(opts, code);
  if (inputs === undefined) return derive();
  const slot = JSON.stringify([code, opts.profile.name, opts.policy ?? null, opts.emulate ?? [], opts.kernelFilesMounted ?? false]);
  const hit = readCached('plans', slot, inputs, decodePlanned);
  if (hit) return hit;
  const planned = derive();
  writeCached('plans', slot, inputs, encodePlanned(planned));
  return planned;
}

// The stored form: the plan as JSON, bigints as decimal strings, bytes as base64.

function encodeAnswer(a: NativeAnswer): unknown {
  switch (a.kind) {
    case 'value':
      return { kind: 'value', value: a.value.toString() };
    case 'struct':
      return { kind: 'struct', argIndex: a.argIndex, bytes: Buffer.from(a.bytes).toString('base64') };
    default:
      return a;
  }
}

function encodeAction(a: Action): unknown {
  return a.kind === 'notify' && 'answer' in a ? { kind: 'notify', answer: encodeAnswer(a.answer) } : a;
}

function encodeCondition(c: ArgCondition): unknown {
  return { index: c.index, op: c.op, value: c.value.toString(), ...(c.mask === undefined ? {} : { mask: c.mask.toString() }) };
}

/**
 * A decision as [nr, name], [nr, name, fallback] or [nr, name, fallback,
 * rules]: most are allowed without rules, and a short entry parses faster.
 */
function encodeDecision(d: SyscallDecision): unknown[] {
  const rules = d.rules.map((r) => ({ conditions: r.conditions.map(encodeCondition), action: encodeAction(r.action) }));
  if (rules.length > 0) return [d.nr, d.name, encodeAction(d.fallback), rules];
  return d.fallback.kind === 'allow' ? [d.nr, d.name] : [d.nr, d.name, encodeAction(d.fallback)];
}

export function encodePlanned({ plan, warnings, filter }: Planned): unknown {
  return {
    plan: {
      profile: plan.profile,
      arches: plan.arches.map((ap) => ({
        arch: ap.arch,
        defaultAction: encodeAction(ap.defaultAction),
        syscalls: ap.syscalls.map(encodeDecision),
      })),
      foreignArch: encodeAction(plan.foreignArch),
      x32: encodeAction(plan.x32),
    },
    warnings,
    filter: filter.toString('base64'),
  };
}

/** A stored value that is not what encodePlanned writes. */
class Malformed extends Error {}

function fail(what: string): never {
  throw new Malformed(what);
}

type Json = Record<string, unknown>;

function obj(v: unknown): Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : fail('object');
}

function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : fail('array');
}

function int(v: unknown, min: number, max: number): number {
  return Number.isInteger(v) && (v as number) >= min && (v as number) <= max ? (v as number) : fail('integer');
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : fail('string');
}

function u64(v: unknown): bigint {
  const s = str(v);
  if (!/^\d{1,20}$/.test(s)) fail('u64');
  const n = BigInt(s);
  return n < 1n << 64n ? n : fail('u64');
}

/** Bytes from base64 that is exactly what encoding them gives (Buffer.from skips stray characters). */
function base64(v: unknown): Buffer {
  const s = str(v);
  const b = Buffer.from(s, 'base64');
  return b.toString('base64') === s ? b : fail('base64');
}

function decodeAnswer(v: unknown): NativeAnswer {
  const a = obj(v);
  switch (a.kind) {
    case 'value':
      return { kind: 'value', value: u64(a.value) };
    case 'errno':
      return { kind: 'errno', errno: int(a.errno, 0, 4095) };
    case 'struct':
      return { kind: 'struct', argIndex: int(a.argIndex, 0, 5), bytes: base64(a.bytes) };
    case 'continue':
      return { kind: 'continue' };
    default:
      return fail('answer');
  }
}

function decodeAction(v: unknown): Action {
  const a = obj(v);
  switch (a.kind) {
    case 'allow':
    case 'trap':
    case 'log':
      return { kind: a.kind };
    case 'errno':
      return { kind: 'errno', errno: int(a.errno, 0, 4095) };
    case 'kill':
      return a.scope === 'process' || a.scope === 'thread' ? { kind: 'kill', scope: a.scope } : fail('kill');
    case 'trace':
      return { kind: 'trace', data: int(a.data, 0, 0xffff) };
    case 'notify':
      return 'shim' in a ? { kind: 'notify', shim: str(a.shim) } : { kind: 'notify', answer: decodeAnswer(a.answer) };
    default:
      return fail('action');
  }
}

const OPS: readonly CompareOp[] = ['eq', 'ne', 'lt', 'le', 'gt', 'ge', 'masked_eq'];

function decodeCondition(v: unknown): ArgCondition {
  const c = obj(v);
  const op = OPS.find((o) => o === c.op) ?? fail('op');
  const index = int(c.index, 0, 5) as ArgCondition['index'];
  return c.mask === undefined ? { index, op, value: u64(c.value) } : { index, op, value: u64(c.value), mask: u64(c.mask) };
}

function decodeDecision(v: unknown): SyscallDecision {
  const d = arr(v);
  if (d.length < 2 || d.length > 4) fail('decision');
  const rules = d.length < 4 ? [] : arr(d[3]).map((r): Rule => {
    const o = obj(r);
    return { conditions: arr(o.conditions).map(decodeCondition), action: decodeAction(o.action) };
  });
  return { nr: int(d[0], 0, 0x3fffffff), name: str(d[1]), rules, fallback: d.length < 3 ? ALLOW : decodeAction(d[2]) };
}

function decodeArch(v: unknown): ArchPlan {
  const a = obj(v);
  const arch: ArchName = a.arch === 'x86_64' || a.arch === 'i386' ? a.arch : fail('arch');
  return { arch, syscalls: arr(a.syscalls).map(decodeDecision), defaultAction: decodeAction(a.defaultAction) };
}

/** What encodePlanned wrote, checked field by field; undefined if anything is off. */
export function decodePlanned(v: unknown): Planned | undefined {
  try {
    const o = obj(v);
    const p = obj(o.plan);
    const plan: Plan = {
      profile: str(p.profile),
      arches: arr(p.arches).map(decodeArch),
      foreignArch: decodeAction(p.foreignArch),
      x32: decodeAction(p.x32),
    };
    const filter = base64(o.filter);
    // A filter is whole sock_filter instructions (8 bytes), at most BPF_MAXINSNS of them.
    if (filter.length === 0 || filter.length % 8 !== 0 || filter.length > 4096 * 8) fail('filter');
    return { plan, warnings: arr(o.warnings).map(str), filter };
  } catch (e) {
    if (e instanceof Malformed) return undefined;
    throw e;
  }
}
