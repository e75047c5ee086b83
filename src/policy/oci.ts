/**
 * Loads an OCI runtime-spec seccomp policy (the `linux.seccomp` object of a
 * container's config.json, or a bare profile as Docker ships it) into vjail's
 * format-independent `Policy`.
 *
 * Semantics follow what runc and Docker do with the same file, so a profile
 * means the same thing under vjail as under a container runtime:
 *
 * - Actions: SCMP_ACT_KILL is SCMP_ACT_KILL_THREAD. SCMP_ACT_ERRNO fails with
 *   `errnoRet` (the default action with `defaultErrnoRet`), else EPERM.
 *   SCMP_ACT_TRACE passes `errnoRet` (else 0) to the tracer. SCMP_ACT_NOTIFY
 *   becomes a notification that vjail's own supervisor receives: the call is
 *   recorded in the trace and then let through unchanged (a `continue`
 *   answer). `listenerPath` and `listenerMetadata` are accepted and kept, but
 *   no outside agent is contacted: vjail's supervisor is the listener.
 * - SCMP_CMP_MASKED_EQ: `value` is the mask and `valueTwo` the datum (libseccomp's
 *   datum_a and datum_b), matching when `(arg & value) == valueTwo`.
 * - Several `args` on the same argument index make the entry match when ANY
 *   of them holds (runc then adds one rule per condition); otherwise all must hold.
 * - An entry whose action equals the default action is dropped, as runc does;
 *   the remaining entries are tried in file order, first match wins.
 * - Architectures: the native x86_64 is always admitted (libseccomp always
 *   keeps the native arch); SCMP_ARCH_X86 adds i386; SCMP_ARCH_X32 sets
 *   `x32` in the result (the plan decides what x32-ABI calls get); other
 *   architectures cannot reach an x86_64 kernel and are listed in
 *   `ignoredArchitectures`. With Docker's `archMap`, the SCMP_ARCH_X86_64
 *   entry and its `subArchitectures` are used.
 * - Docker's `includes`/`excludes` are evaluated as Docker does on amd64: an
 *   entry is kept when every `includes` condition holds (all its `caps`
 *   present, the native arch "amd64" among its `arches`, the kernel at least
 *   `minKernel`) and no `excludes` condition holds (any of its `caps` present,
 *   "amd64" among its `arches`, the kernel at least `minKernel`).
 *   `vjail run` passes the capabilities the jail holds (policy/capabilities.ts),
 *   vjail-oci the container process's; without them, the full set a root
 *   process starts with. The kernel defaults to "new enough".
 * - Syscall names unknown on every admitted architecture are skipped and
 *   reported in `unknownSyscalls`, as runc skips names libseccomp cannot
 *   resolve. Names are not turned into numbers here; the plan does that.
 *
 * Integers are read exactly (values are u64; see json.ts).
 */
import { POLICY_MAX_BYTES, readUserFile } from '../input.js';
import type * as Zod from 'zod';
import { zod } from '../zod.js';
import { sameAction, type Action, type ArchName, type ArgCondition, type CompareOp } from '../plan/action.js';
import { multiplexedBy } from '../plan/multiplex.js';
import { shippedPolicies } from './shipped.js';
import { syscallTable, type SyscallTable } from '../syscalls/table.js';
import { JsonSyntaxError, parseJsonExact } from './json.js';
import type { Policy, PolicyEntry } from './types.js';

/** A policy file vjail cannot use. The message is one line: where, what, and the fix. */
export class PolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PolicyError';
  }
}

export interface OciPolicyOptions {
  /** Capabilities the jailed process holds (e.g. "CAP_SYS_ADMIN" or "sys_admin"). Default: ALL_CAPABILITIES. */
  capabilities?: readonly string[];
  /** Kernel release the profile targets, e.g. "5.15" or "6.1.0-13-amd64". Default: every minKernel is met. */
  kernelRelease?: string;
  /** Whether a syscall name exists on some admitted architecture. Default: the syscall tables shipped with vjail. */
  knownSyscall?: (name: string) => boolean;
}

export interface OciPolicy extends Policy {
  /** The profile admits x32-ABI calls (SCMP_ARCH_X32). */
  x32: boolean;
  /** SECCOMP_FILTER_FLAG_* names from `flags`, as written. */
  flags: string[];
  listenerPath?: string;
  listenerMetadata?: string;
  /** Syscall names no admitted architecture has; their entries were applied without them. */
  unknownSyscalls: string[];
  /** Entries left out by Docker `includes`/`excludes` conditions. */
  filteredEntries: number;
  /** Entries dropped because their action equals the default action. */
  redundantEntries: number;
  /** Architectures named in the file that an x86_64 kernel never reports. */
  ignoredArchitectures: string[];
}

/** Capabilities 0..40 (CAP_CHOWN .. CAP_CHECKPOINT_RESTORE): what a root process holds. */
export const ALL_CAPABILITIES: readonly string[] = Object.freeze([
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL',
  'CAP_SETGID', 'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST', 'CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER',
  'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE', 'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP', 'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ', 'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
]);

export const OCI_ACTIONS = [
  'SCMP_ACT_ALLOW', 'SCMP_ACT_ERRNO', 'SCMP_ACT_KILL', 'SCMP_ACT_KILL_THREAD', 'SCMP_ACT_KILL_PROCESS',
  'SCMP_ACT_TRAP', 'SCMP_ACT_TRACE', 'SCMP_ACT_LOG', 'SCMP_ACT_NOTIFY',
] as const;
type OciAction = (typeof OCI_ACTIONS)[number];

const OPS: Record<string, CompareOp> = {
  SCMP_CMP_NE: 'ne', SCMP_CMP_LT: 'lt', SCMP_CMP_LE: 'le', SCMP_CMP_EQ: 'eq',
  SCMP_CMP_GE: 'ge', SCMP_CMP_GT: 'gt', SCMP_CMP_MASKED_EQ: 'masked_eq',
};
const OP_NAMES = Object.keys(OPS) as [string, ...string[]];

const FLAGS = [
  'SECCOMP_FILTER_FLAG_TSYNC', 'SECCOMP_FILTER_FLAG_LOG', 'SECCOMP_FILTER_FLAG_SPEC_ALLOW',
  'SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV',
] as const;

const EPERM = 1;
const MAX_ERRNO = 4095;
/**
 * Rules a policy may hold: syscall names times argument alternatives, summed
 * over its entries. Docker's default has 442; a filter holds at most 4096
 * instructions (BPF_MAXINSNS), so beyond this most rules could never take
 * effect. Counted before anything walks the entries: planning and compiling
 * are then bounded too, and end in well under a second.
 */
export const MAX_POLICY_RULES = 4096;
const U64_MAX = (1n << 64n) - 1n;
/** libseccomp's name for the only native architecture vjail runs on, as Docker's `arches` filters spell it. */
const NATIVE_ARCH = 'amd64';

// ---------------------------------------------------------------- schema

/** The zod schemas, built on first use (see src/zod.ts). */
function buildSchemas(z: typeof Zod) {
  const u64 = z.unknown().transform((v, ctx) => {
    const n = typeof v === 'number' && Number.isInteger(v) ? BigInt(v) : v;
    if (typeof n === 'bigint' && n >= 0n && n <= U64_MAX) return n;
    const message =
      v === undefined
        ? 'missing; add an unsigned 64-bit integer'
        : `${show(v)} is not an unsigned 64-bit integer; write a whole number from 0 to ${U64_MAX}`;
    ctx.addIssue({ code: 'custom', message });
    return z.NEVER;
  });

  const uint16 = z.number().int().min(0).max(0xffff);
  const strings = z.array(z.string());
  const kernelVersion = z
    .string()
    .regex(/^(\d+\.\d+)?$/, { error: (iss) => `${show(iss.input)} is not a kernel version; write "<major>.<minor>", e.g. "4.8"` });

  const filter = z.object({ caps: strings.optional(), arches: strings.optional(), minKernel: kernelVersion.optional() });

  const arg = z.object({
    index: z.number().int().min(0).max(5, {
      error: (iss) => `argument index ${show(iss.input)} is out of range; syscalls have six arguments, use 0 to 5`,
    }),
    value: u64,
    valueTwo: u64.optional(),
    op: z.enum(OP_NAMES),
  });

  const syscall = z.object({
    names: z.array(z.string().min(1, { error: 'empty syscall name; remove it or write the name' })).optional(),
    name: z.string().min(1, { error: 'empty syscall name; write the name' }).optional(),
    action: z.enum(OCI_ACTIONS),
    errnoRet: uint16.optional(),
    args: z.array(arg).nullish(),
    comment: z.string().optional(),
    includes: filter.nullish(),
    excludes: filter.nullish(),
  });

  const seccomp = z.object({
    defaultAction: z.enum(OCI_ACTIONS),
    defaultErrnoRet: uint16.optional(),
    architectures: z.array(z.string()).nullish(),
    archMap: z
      .array(z.object({ architecture: z.string(), subArchitectures: z.array(z.string()).nullish() }))
      .nullish(),
    flags: z.array(z.enum(FLAGS)).nullish(),
    listenerPath: z.string().optional(),
    listenerMetadata: z.string().optional(),
    syscalls: z.array(syscall).nullish(),
  });
  return { seccomp, syscall, arg };
}

type Schemas = ReturnType<typeof buildSchemas>;
let built: Schemas | undefined;
const schemas = (): Schemas => (built ??= buildSchemas(zod()));

type SeccompJson = Zod.infer<Schemas['seccomp']>;
type SyscallJson = Zod.infer<Schemas['syscall']>;
type ArgJson = Zod.infer<Schemas['arg']>;

// ---------------------------------------------------------------- loading

/** Read and convert an OCI seccomp policy file (bare profile or whole config.json). */
export function loadOciPolicy(path: string, opts: OciPolicyOptions = {}): OciPolicy {
  const text = readUserFile(path, POLICY_MAX_BYTES, (why) => {
    const shipped = /ENOENT/.test(why) && !path.includes('/') ? `, or the name of one shipped with vjail (${shippedPolicies().join(', ')})` : '';
    throw new PolicyError(`${path}: the policy file ${why}; give a regular file (of JSON) that vjail can read${shipped}`);
  });
  let json: unknown;
  try {
    json = parseJsonExact(text);
  } catch (e) {
    if (!(e instanceof JsonSyntaxError)) throw e;
    throw new PolicyError(`${path}:${e.line}:${e.column}: not valid JSON: ${e.detail}; fix the file's syntax there`);
  }
  return parseOciPolicy(json, path, opts);
}

/**
 * Convert an already-parsed policy. Large integers should be bigints (parse
 * with `parseJsonExact`); plain numbers are accepted when they are exact.
 */
export function parseOciPolicy(json: unknown, source: string, opts: OciPolicyOptions = {}): OciPolicy {
  const { body, prefix } = locate(json, source);
  const fail = (path: readonly PropertyKey[], message: string): never => {
    throw new PolicyError(`${source}: ${jsonPath(prefix, path)}: ${message}`);
  };
  const long = longList(body);
  if (long) fail(long.path, `${long.length} items, more than the ${MAX_POLICY_RULES} a list in a policy may hold; shorten it`);
  const rules = countRules(body);
  if (rules > MAX_POLICY_RULES) {
    fail(
      ['syscalls'],
      `${rules} rules (syscall names times argument alternatives), more than the ${MAX_POLICY_RULES} a policy may hold ` +
        `(a filter holds at most 4096 instructions); merge or remove entries`,
    );
  }

  const parsed = schemas().seccomp.safeParse(body, { error: (iss) => issueMessage(iss) });
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    fail(issue.path, issue.message);
  }
  const p = parsed.data as SeccompJson;

  if (p.listenerMetadata !== undefined && p.listenerPath === undefined) {
    fail(['listenerMetadata'], 'set without listenerPath; remove listenerMetadata or add listenerPath');
  }
  const defaultAction = toAction(p.defaultAction, p.defaultErrnoRet, ['defaultErrnoRet'], fail);
  const arches = admittedArches(p, fail);
  const when = conditionContext(opts);
  const known = opts.knownSyscall ?? tableLookup(arches.arches);

  const entries: PolicyEntry[] = [];
  const unknown = new Set<string>();
  let filtered = 0;
  let redundant = 0;
  (p.syscalls ?? []).forEach((call, i) => {
    const at = ['syscalls', i];
    const names = entryNames(call, at, fail);
    const action = toAction(call.action, call.errnoRet, [...at, 'errnoRet'], fail);
    const alternatives = conditionSets(call.args ?? []);
    if (!applies(call, when)) {
      filtered++;
      return;
    }
    if (sameAction(action, defaultAction)) {
      redundant++;
      return;
    }
    const kept: string[] = [];
    for (const n of names) {
      if (known(n)) kept.push(n);
      else unknown.add(n);
    }
    if (kept.length === 0) return;
    for (const conditions of alternatives) entries.push({ names: kept, action, conditions });
  });

  return {
    source,
    defaultAction,
    arches: arches.arches,
    entries,
    x32: arches.x32,
    flags: p.flags ?? [],
    ...(p.listenerPath !== undefined && { listenerPath: p.listenerPath }),
    ...(p.listenerMetadata !== undefined && { listenerMetadata: p.listenerMetadata }),
    unknownSyscalls: [...unknown],
    filteredEntries: filtered,
    redundantEntries: redundant,
    ignoredArchitectures: arches.ignored,
  };
}

type Fail = (path: readonly PropertyKey[], message: string) => never;

/** A bare profile is used as is; a config.json contributes its linux.seccomp. */
function locate(json: unknown, source: string): { body: unknown; prefix: string } {
  if (!isObject(json)) {
    throw new PolicyError(
      `${source}: top level: expected a JSON object, got ${show(json)}; write a seccomp profile {"defaultAction": …} or an OCI config.json`,
    );
  }
  if ('defaultAction' in json || 'syscalls' in json) return { body: json, prefix: '' };
  if ('linux' in json || 'ociVersion' in json) {
    const linux = json['linux'];
    if (isObject(linux) && linux['seccomp'] !== undefined) return { body: linux['seccomp'], prefix: 'linux.seccomp' };
    throw new PolicyError(`${source}: linux.seccomp: missing; this config.json has no seccomp policy, add one or use a bare profile`);
  }
  return { body: json, prefix: '' };
}

function entryNames(call: SyscallJson, at: (string | number)[], fail: Fail): string[] {
  if (call.name !== undefined && call.names !== undefined) {
    fail(at, 'has both "name" and "names"; keep only "names"');
  }
  if (call.name !== undefined) return [call.name];
  if (!call.names || call.names.length === 0) {
    fail([...at, 'names'], 'missing or empty; list at least one syscall name, e.g. "names": ["read"]');
  }
  return call.names!;
}

function toAction(name: OciAction, ret: number | undefined, retPath: (string | number)[], fail: Fail): Action {
  if (ret !== undefined && name !== 'SCMP_ACT_ERRNO' && name !== 'SCMP_ACT_TRACE') {
    fail(retPath, `${name} takes no return code; remove it or use SCMP_ACT_ERRNO or SCMP_ACT_TRACE`);
  }
  switch (name) {
    case 'SCMP_ACT_ALLOW':
      return { kind: 'allow' };
    case 'SCMP_ACT_ERRNO':
      if (ret !== undefined && ret > MAX_ERRNO) fail(retPath, `errno ${ret} is above ${MAX_ERRNO}; use an errno from 0 to ${MAX_ERRNO}`);
      return { kind: 'errno', errno: ret ?? EPERM };
    case 'SCMP_ACT_KILL':
    case 'SCMP_ACT_KILL_THREAD':
      return { kind: 'kill', scope: 'thread' };
    case 'SCMP_ACT_KILL_PROCESS':
      return { kind: 'kill', scope: 'process' };
    case 'SCMP_ACT_TRAP':
      return { kind: 'trap' };
    case 'SCMP_ACT_TRACE':
      return { kind: 'trace', data: ret ?? 0 };
    case 'SCMP_ACT_LOG':
      return { kind: 'log' };
    case 'SCMP_ACT_NOTIFY':
      return { kind: 'notify', answer: { kind: 'continue' } };
  }
}

function admittedArches(p: SeccompJson, fail: Fail): { arches: ArchName[]; x32: boolean; ignored: string[] } {
  let listed: string[] = p.architectures ?? [];
  if (p.archMap && p.archMap.length > 0) {
    if (listed.length > 0) fail(['archMap'], 'given together with "architectures"; keep only one of them');
    const native = p.archMap.find((a) => a.architecture === 'SCMP_ARCH_X86_64');
    listed = native ? [native.architecture, ...(native.subArchitectures ?? [])] : [];
  }
  const arches: ArchName[] = ['x86_64'];
  let x32 = false;
  // A Set: a hostile file may list a million distinct names.
  const ignored = new Set<string>();
  for (const a of listed) {
    if (a === 'SCMP_ARCH_X86' && !arches.includes('i386')) arches.push('i386');
    else if (a === 'SCMP_ARCH_X32') x32 = true;
    else if (a !== 'SCMP_ARCH_X86_64' && a !== 'SCMP_ARCH_X86') ignored.add(a);
  }
  return { arches, x32, ignored: [...ignored] };
}

/** The first list longer than MAX_POLICY_RULES: checking each of its items (and saying what is wrong with each) costs too much. */
function longList(v: unknown): { path: (string | number)[]; length: number } | undefined {
  const inside = (key: string | number, item: unknown) => {
    const found = longList(item);
    found?.path.unshift(key); // built on the way out: nothing is copied per item
    return found;
  };
  if (Array.isArray(v)) {
    if (v.length > MAX_POLICY_RULES) return { path: [], length: v.length };
    for (let i = 0; i < v.length; i++) {
      const found = inside(i, v[i]);
      if (found) return found;
    }
  } else if (isObject(v)) {
    for (const k of Object.keys(v)) {
      const found = inside(k, v[k]);
      if (found) return found;
    }
  }
  return undefined;
}

/**
 * The rules `body.syscalls` would make, read from the unchecked JSON as
 * parseOciPolicy would expand it: each name once per alternative condition
 * set, an entry counting at least one (what it costs to check).
 */
function countRules(body: unknown): number {
  const calls = isObject(body) ? body['syscalls'] : undefined;
  if (!Array.isArray(calls)) return 0;
  let total = 0;
  for (const call of calls) {
    if (!isObject(call)) {
      total++;
      continue;
    }
    const names = Array.isArray(call['names']) ? call['names'].length : 1;
    const args = Array.isArray(call['args']) ? call['args'] : [];
    // Six arguments: more conditions than that repeat an index, and each is an alternative.
    const indexes = new Set(args.map((a) => (isObject(a) ? a['index'] : undefined)));
    const alternatives = args.length > 6 || indexes.size < args.length ? args.length : 1;
    total += Math.max(1, names) * Math.max(1, alternatives);
  }
  return total;
}

/** OCI args → alternative condition sets (usually one; one per arg when an index repeats). */
function conditionSets(args: ArgJson[]): ArgCondition[][] {
  const conds = args.map(toCondition);
  const indexes = new Set(conds.map((c) => c.index));
  return indexes.size === conds.length ? [conds] : conds.map((c) => [c]);
}

function toCondition(a: ArgJson): ArgCondition {
  const index = a.index as ArgCondition['index'];
  const op = OPS[a.op]!;
  if (op === 'masked_eq') return { index, op, mask: a.value, value: a.valueTwo ?? 0n };
  return { index, op, value: a.value };
}

// ---------------------------------------------------------------- includes / excludes

interface ConditionContext {
  caps: Set<string>;
  kernel?: [number, number];
}

function conditionContext(opts: OciPolicyOptions): ConditionContext {
  const caps = new Set((opts.capabilities ?? ALL_CAPABILITIES).map(capName));
  if (opts.kernelRelease === undefined) return { caps };
  const m = /^(\d+)\.(\d+)/.exec(opts.kernelRelease);
  if (!m) {
    throw new PolicyError(
      `kernel release ${show(opts.kernelRelease)} is not understood; give it as "<major>.<minor>[...]", e.g. "5.15"`,
    );
  }
  return { caps, kernel: [Number(m[1]), Number(m[2])] };
}

function capName(c: string): string {
  const u = c.toUpperCase();
  return u.startsWith('CAP_') ? u : `CAP_${u}`;
}

function kernelAtLeast(ctx: ConditionContext, min: string): boolean {
  if (!ctx.kernel) return true;
  const [maj, min2] = min.split('.').map(Number) as [number, number];
  return ctx.kernel[0] > maj || (ctx.kernel[0] === maj && ctx.kernel[1] >= min2);
}

function applies(call: SyscallJson, ctx: ConditionContext): boolean {
  const inc = call.includes;
  if (inc) {
    if (inc.caps?.length && !inc.caps.every((c) => ctx.caps.has(capName(c)))) return false;
    if (inc.arches?.length && !inc.arches.includes(NATIVE_ARCH)) return false;
    if (inc.minKernel && !kernelAtLeast(ctx, inc.minKernel)) return false;
  }
  const exc = call.excludes;
  if (exc) {
    if (exc.caps?.some((c) => ctx.caps.has(capName(c)))) return false;
    if (exc.arches?.includes(NATIVE_ARCH)) return false;
    // Without a kernel release every minKernel counts as met, so the exclusion applies.
    if (exc.minKernel && kernelAtLeast(ctx, exc.minKernel)) return false;
  }
  return true;
}

// ---------------------------------------------------------------- names

/** A name is known when any of the given syscall tables has it. */
export function knownIn(tables: readonly SyscallTable[]): (name: string) => boolean {
  return (name) => tables.some((t) => t.byName(name) !== undefined);
}

function tableLookup(arches: readonly ArchName[]): (name: string) => boolean {
  let lookup: ((name: string) => boolean) | undefined;
  // i386 reaches send and recv only through socketcall, which such entries decide (plan/multiplex.ts).
  const viaMultiplexer = (name: string) => arches.includes('i386') && multiplexedBy(name) !== undefined;
  return (name) => (lookup ??= knownIn(arches.map(syscallTable)))(name) || viaMultiplexer(name);
}

// ---------------------------------------------------------------- messages

function issueMessage(iss: Zod.core.$ZodRawIssue): string {
  switch (iss.code) {
    case 'invalid_type':
      if (iss.input === undefined) return `missing; add it (${iss.expected === 'object' ? 'an object' : `a ${iss.expected}`})`;
      return `expected ${article(iss.expected)}, got ${show(iss.input)}; change it to ${article(iss.expected)}`;
    case 'invalid_value': {
      const values = iss.values.map(String).join(', ');
      if (iss.input === undefined) return `missing; add one of ${values}`;
      return `${show(iss.input)} is not valid here; use one of ${values}`;
    }
    case 'too_big':
      return `${show(iss.input)} is too large; use at most ${String(iss.maximum)}`;
    case 'too_small':
      return `${show(iss.input)} is too small; use at least ${String(iss.minimum)}`;
    default:
      return `invalid value ${show(iss.input)}; see the OCI runtime-spec seccomp section`;
  }
}

function article(expected: string): string {
  const noun = expected === 'int' ? 'integer' : expected;
  return /^[aeiou]/.test(noun) ? `an ${noun}` : `a ${noun}`;
}

/** A short, one-line rendering of an input value for messages. */
function show(v: unknown): string {
  if (typeof v === 'bigint') return v.toString();
  if (Array.isArray(v)) return 'an array';
  if (v === null) return 'null';
  if (typeof v === 'object') return 'an object';
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function jsonPath(prefix: string, path: readonly PropertyKey[]): string {
  let out = prefix;
  for (const k of path) {
    if (typeof k === 'number') out += `[${k}]`;
    else out += out === '' ? String(k) : `.${String(k)}`;
  }
  return out === '' ? 'top level' : out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
