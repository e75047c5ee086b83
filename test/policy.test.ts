import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Action, ArgCondition } from '../src/plan/action.js';
import { JsonSyntaxError, MAX_DEPTH, parseJsonExact } from '../src/policy/json.js';
import { ALL_CAPABILITIES, knownIn, loadOciPolicy, parseOciPolicy, PolicyError, type OciPolicy } from '../src/policy/oci.js';
import { SyscallTable } from '../src/syscalls/table.js';

const dir = fileURLToPath(new URL('./fixtures/policies/', import.meta.url));
const fixture = (name: string) => join(dir, name);
const anyName = () => true;

/** Capabilities Docker grants a container by default (no CAP_SYS_ADMIN, CAP_SYS_BOOT, CAP_SYS_PTRACE). */
const DOCKER_CAPS = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

const CLONE_NEWUSER = 0x10000000n;
const CLONE_NEWNS = 0x00020000n;
const THREAD_FLAGS = 0x3d0f00n; // CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID

/** What the policy does with one call: first entry naming it whose conditions all hold, else the default. */
function decide(p: OciPolicy, name: string, args: bigint[] = []): Action {
  const holds = (c: ArgCondition) => {
    const a = args[c.index] ?? 0n;
    switch (c.op) {
      case 'eq': return a === c.value;
      case 'ne': return a !== c.value;
      case 'lt': return a < c.value;
      case 'le': return a <= c.value;
      case 'gt': return a > c.value;
      case 'ge': return a >= c.value;
      case 'masked_eq': return (a & c.mask!) === c.value;
    }
  };
  const hit = p.entries.find((e) => e.names.includes(name) && e.conditions.every(holds));
  return hit ? hit.action : p.defaultAction;
}

const entriesFor = (p: OciPolicy, name: string) => p.entries.filter((e) => e.names.includes(name));

/** The one-line PolicyError message a call throws. */
function errorOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(PolicyError);
    const msg = (e as Error).message;
    expect(msg).not.toContain('\n');
    return msg;
  }
  throw new Error('expected a PolicyError, nothing was thrown');
}

describe("Docker's default profile", () => {
  const full = loadOciPolicy(fixture('docker-default.json'), { knownSyscall: anyName });
  const docker = loadOciPolicy(fixture('docker-default.json'), { knownSyscall: anyName, capabilities: DOCKER_CAPS });

  it('loads with the default action, architectures and no leftovers', () => {
    expect(full.source).toBe(fixture('docker-default.json'));
    expect(full.defaultAction).toEqual({ kind: 'errno', errno: 1 });
    expect(full.arches).toEqual(['x86_64', 'i386']);
    expect(full.x32).toBe(true);
    expect(full.ignoredArchitectures).toEqual([]);
    expect(full.unknownSyscalls).toEqual([]);
    expect(full.flags).toEqual([]);
    expect(full.entries.length).toBeGreaterThan(20);
  });

  it('allows ordinary calls without conditions', () => {
    for (const name of ['read', 'write', 'openat', 'exit_group', 'rt_sigreturn']) {
      expect(decide(docker, name)).toEqual({ kind: 'allow' });
    }
    const read = entriesFor(docker, 'read');
    expect(read).toHaveLength(1);
    expect(read[0]!.conditions).toEqual([]);
    expect(decide(docker, 'arch_prctl')).toEqual({ kind: 'allow' }); // includes.arches amd64
    expect(decide(docker, 'no_such_call')).toEqual({ kind: 'errno', errno: 1 });
  });

  it('allows clone only while the namespace flags mask is clear, without CAP_SYS_ADMIN', () => {
    const clone = entriesFor(docker, 'clone');
    expect(clone).toHaveLength(1); // the s390 variant (argument 1) is left out on amd64
    expect(clone[0]!.conditions).toEqual([{ index: 0, op: 'masked_eq', mask: 2114060288n, value: 0n }]);
    expect(decide(docker, 'clone', [THREAD_FLAGS])).toEqual({ kind: 'allow' });
    expect(decide(docker, 'clone', [THREAD_FLAGS | CLONE_NEWUSER])).toEqual({ kind: 'errno', errno: 1 });
    expect(decide(docker, 'clone', [CLONE_NEWNS])).toEqual({ kind: 'errno', errno: 1 });
    expect(decide(docker, 'clone3')).toEqual({ kind: 'errno', errno: 38 });
    expect(decide(docker, 'mount')).toEqual({ kind: 'errno', errno: 1 });
    expect(decide(docker, 'unshare')).toEqual({ kind: 'errno', errno: 1 });
  });

  it('excludes entries that need CAP_SYS_ADMIN when it is not held, and includes them when it is', () => {
    // Left out with every capability: four entries for other arches, the s390 clone rule,
    // and the two rules that apply only without CAP_SYS_ADMIN.
    expect(full.filteredEntries).toBe(7);
    expect(decide(full, 'mount')).toEqual({ kind: 'allow' });
    expect(decide(full, 'clone', [CLONE_NEWUSER])).toEqual({ kind: 'allow' });
    expect(decide(full, 'clone3')).toEqual({ kind: 'allow' });
    // The masked clone rule and the clone3 ENOSYS rule are excluded when CAP_SYS_ADMIN is held.
    expect(entriesFor(full, 'clone').every((e) => e.conditions.length === 0)).toBe(true);
    expect(entriesFor(full, 'clone3').map((e) => e.action)).toEqual([{ kind: 'allow' }]);

    const noAdmin = loadOciPolicy(fixture('docker-default.json'), {
      knownSyscall: anyName,
      capabilities: ALL_CAPABILITIES.filter((c) => c !== 'CAP_SYS_ADMIN'),
    });
    for (const name of ['mount', 'umount2', 'setns', 'unshare', 'sethostname', 'fsopen']) {
      expect(decide(noAdmin, name)).toEqual({ kind: 'errno', errno: 1 });
    }
    expect(decide(noAdmin, 'clone3')).toEqual({ kind: 'errno', errno: 38 });
    expect(noAdmin.filteredEntries).toBe(6); // the CAP_SYS_ADMIN entry out, its two stand-ins in
    // Entries needing other capabilities are still there.
    expect(decide(noAdmin, 'reboot')).toEqual({ kind: 'allow' });
    expect(decide(noAdmin, 'bpf')).toEqual({ kind: 'allow' }); // via CAP_BPF
  });

  it('keeps reboot out of the allowed set without CAP_SYS_BOOT', () => {
    expect(entriesFor(docker, 'reboot')).toEqual([]);
    expect(decide(docker, 'reboot')).toEqual({ kind: 'errno', errno: 1 });
    expect(decide(full, 'reboot')).toEqual({ kind: 'allow' });
    const boot = loadOciPolicy(fixture('docker-default.json'), { knownSyscall: anyName, capabilities: ['sys_boot'] });
    expect(decide(boot, 'reboot')).toEqual({ kind: 'allow' });
  });

  it('has the personality argument rules', () => {
    const rules = entriesFor(docker, 'personality');
    expect(rules.map((e) => e.conditions)).toEqual(
      [0n, 8n, 131072n, 131080n, 4294967295n].map((value) => [{ index: 0, op: 'eq', value }]),
    );
    expect(decide(docker, 'personality', [0x20000n])).toEqual({ kind: 'allow' }); // UNAME26
    expect(decide(docker, 'personality', [0xffffffffn])).toEqual({ kind: 'allow' }); // query
    expect(decide(docker, 'personality', [0x0040000n])).toEqual({ kind: 'errno', errno: 1 }); // ADDR_NO_RANDOMIZE
  });

  it('has the socket family rules (AF_VSOCK refused)', () => {
    expect(entriesFor(docker, 'socket').map((e) => e.conditions[0])).toEqual([
      { index: 0, op: 'lt', value: 38n },
      { index: 0, op: 'eq', value: 39n },
      { index: 0, op: 'gt', value: 40n },
    ]);
    expect(decide(docker, 'socket', [2n])).toEqual({ kind: 'allow' });
    expect(decide(docker, 'socket', [40n])).toEqual({ kind: 'errno', errno: 1 });
  });

  it('applies minKernel against the given kernel release', () => {
    const caps = { knownSyscall: anyName, capabilities: DOCKER_CAPS };
    expect(decide(loadOciPolicy(fixture('docker-default.json'), { ...caps, kernelRelease: '4.4.0-210-generic' }), 'ptrace'))
      .toEqual({ kind: 'errno', errno: 1 });
    expect(decide(loadOciPolicy(fixture('docker-default.json'), { ...caps, kernelRelease: '4.8' }), 'ptrace'))
      .toEqual({ kind: 'allow' });
    expect(decide(loadOciPolicy(fixture('docker-default.json'), { ...caps, kernelRelease: '6.1.0' }), 'ptrace'))
      .toEqual({ kind: 'allow' });
    expect(decide(docker, 'ptrace')).toEqual({ kind: 'allow' }); // no release given: minKernel is met
  });
});

describe('OCI config.json and other fields', () => {
  const table = new SyscallTable({
    arch: 'x86_64',
    auditArch: 0xc000003e,
    sources: [],
    syscalls: ['getcwd', 'chmod', 'mkdir', 'getpid', 'uname'].map((name, nr) => ({ nr, name, added: '2.6.0', args: [] })),
  });
  const p = loadOciPolicy(fixture('config.json'), { knownSyscall: knownIn([table]) });

  it('takes linux.seccomp from a whole config.json', () => {
    expect(p.defaultAction).toEqual({ kind: 'allow' });
    expect(p.arches).toEqual(['x86_64']);
    expect(p.x32).toBe(false);
    expect(p.flags).toEqual(['SECCOMP_FILTER_FLAG_LOG']);
    expect(p.listenerPath).toBe('agent.sock');
    expect(p.listenerMetadata).toBe('demo');
  });

  it('maps actions and skips unknown names, reporting them', () => {
    expect(decide(p, 'getcwd')).toEqual({ kind: 'errno', errno: 1 });
    expect(decide(p, 'mkdir')).toEqual({ kind: 'notify', answer: { kind: 'continue' } });
    expect(decide(p, 'uname')).toEqual({ kind: 'trace', data: 7 });
    expect(p.unknownSyscalls).toEqual(['not_a_syscall']);
    expect(p.entries.flatMap((e) => e.names)).not.toContain('not_a_syscall');
    // getpid ALLOW equals the default action: dropped, as runc does.
    expect(p.redundantEntries).toBe(1);
    expect(entriesFor(p, 'getpid')).toEqual([]);
  });

  it('maps every OCI action', () => {
    const actions = {
      SCMP_ACT_KILL: { kind: 'kill', scope: 'thread' },
      SCMP_ACT_KILL_THREAD: { kind: 'kill', scope: 'thread' },
      SCMP_ACT_KILL_PROCESS: { kind: 'kill', scope: 'process' },
      SCMP_ACT_TRAP: { kind: 'trap' },
      SCMP_ACT_TRACE: { kind: 'trace', data: 0 },
      SCMP_ACT_LOG: { kind: 'log' },
      SCMP_ACT_ERRNO: { kind: 'errno', errno: 1 },
      SCMP_ACT_NOTIFY: { kind: 'notify', answer: { kind: 'continue' } },
    };
    const policy = parseOciPolicy(
      { defaultAction: 'SCMP_ACT_ALLOW', syscalls: Object.keys(actions).map((action, i) => ({ names: [`c${i}`], action })) },
      'inline',
      { knownSyscall: anyName },
    );
    expect(policy.entries.map((e) => e.action)).toEqual(Object.values(actions));
    const dflt = parseOciPolicy({ defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: 38 }, 'inline', { knownSyscall: anyName });
    expect(dflt.defaultAction).toEqual({ kind: 'errno', errno: 38 });
    const trace = parseOciPolicy({ defaultAction: 'SCMP_ACT_TRACE', defaultErrnoRet: 5, syscalls: [] }, 'inline');
    expect(trace.defaultAction).toEqual({ kind: 'trace', data: 5 });
  });

  it('accepts the legacy "name" field', () => {
    const policy = parseOciPolicy(
      { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ name: 'read', action: 'SCMP_ACT_ALLOW', args: null }] },
      'inline',
      { knownSyscall: anyName },
    );
    expect(policy.entries).toEqual([{ names: ['read'], action: { kind: 'allow' }, conditions: [] }]);
  });

  it('ORs arguments that repeat an index, ANDs distinct ones', () => {
    const policy = parseOciPolicy(
      {
        defaultAction: 'SCMP_ACT_ERRNO',
        syscalls: [
          { names: ['fcntl'], action: 'SCMP_ACT_ALLOW', args: [{ index: 1, value: 1, op: 'SCMP_CMP_EQ' }, { index: 1, value: 2, op: 'SCMP_CMP_EQ' }] },
          { names: ['kill'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0, op: 'SCMP_CMP_EQ' }, { index: 1, value: 0, op: 'SCMP_CMP_EQ' }] },
        ],
      },
      'inline',
      { knownSyscall: anyName },
    );
    expect(entriesFor(policy, 'fcntl')).toHaveLength(2);
    expect(decide(policy, 'fcntl', [0n, 1n])).toEqual({ kind: 'allow' });
    expect(decide(policy, 'fcntl', [0n, 2n])).toEqual({ kind: 'allow' });
    expect(decide(policy, 'fcntl', [0n, 3n])).toEqual({ kind: 'errno', errno: 1 });
    expect(entriesFor(policy, 'kill')).toHaveLength(1);
    expect(decide(policy, 'kill', [0n, 0n])).toEqual({ kind: 'allow' });
    expect(decide(policy, 'kill', [0n, 9n])).toEqual({ kind: 'errno', errno: 1 });
  });

  it('skips names unknown on every admitted architecture, using the syscall tables', () => {
    const i386 = new SyscallTable({ arch: 'i386', auditArch: 0x40000003, sources: [], syscalls: [{ nr: 7, name: 'waitpid', added: '1.0', args: [] }] });
    const known = knownIn([table, i386]);
    expect(known('waitpid')).toBe(true);
    expect(known('uname')).toBe(true);
    expect(known('frobnicate')).toBe(false);
  });
});

describe('u64 argument values', () => {
  const p = loadOciPolicy(fixture('large-values.json'), { knownSyscall: anyName });

  it('keeps values above 2^53 exact', () => {
    expect(entriesFor(p, 'ioctl')[0]!.conditions).toEqual([{ index: 1, op: 'ne', value: 18446744073709551615n }]);
    expect(entriesFor(p, 'mmap')[0]!.conditions).toEqual([
      { index: 3, op: 'masked_eq', mask: 0xffffffff00000000n, value: 9007199254740993n },
    ]);
    expect(entriesFor(p, 'mmap')[0]!.action).toEqual({ kind: 'errno', errno: 12 });
    expect(p.defaultAction).toEqual({ kind: 'kill', scope: 'process' });
  });

  it('reads the architecture list', () => {
    expect(p.arches).toEqual(['x86_64', 'i386']);
    expect(p.x32).toBe(true);
    expect(p.ignoredArchitectures).toEqual(['SCMP_ARCH_AARCH64']);
  });

  it('rejects values outside u64', () => {
    const bad = (value: unknown) =>
      errorOf(() =>
        parseOciPolicy({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['x'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value, op: 'SCMP_CMP_EQ' }] }] }, 'inline'),
      );
    expect(bad(-1)).toBe('inline: syscalls[0].args[0].value: -1 is not an unsigned 64-bit integer; write a whole number from 0 to 18446744073709551615');
    expect(bad(1n << 64n)).toContain('18446744073709551616 is not an unsigned 64-bit integer');
    expect(bad(1.5)).toContain('syscalls[0].args[0].value: 1.5 is not');
    expect(bad('7')).toContain('"7" is not');
  });
});

describe('errors', () => {
  const load = (name: string) => errorOf(() => loadOciPolicy(fixture(name), { knownSyscall: anyName }));

  it('reports bad JSON with line and column', () => {
    expect(load('not-json.json')).toBe(`${fixture('not-json.json')}:5:3: not valid JSON: expected a value, found "]"; fix the file's syntax there`);
  });

  it('names the path of a wrongly typed action and lists the valid ones', () => {
    const msg = load('bad-action-type.json');
    expect(msg).toContain(`${fixture('bad-action-type.json')}: syscalls[3].action: 7 is not valid here; use one of SCMP_ACT_ALLOW, SCMP_ACT_ERRNO,`);
    expect(msg).toContain('SCMP_ACT_NOTIFY');
  });

  it('rejects an unknown action', () => {
    expect(load('unknown-action.json')).toMatch(/unknown-action\.json: syscalls\[0\]\.action: "SCMP_ACT_PERMIT" is not valid here; use one of SCMP_ACT_ALLOW, .*SCMP_ACT_LOG, SCMP_ACT_NOTIFY$/);
  });

  it('rejects an argument index above 5', () => {
    expect(load('bad-arg-index.json')).toMatch(/bad-arg-index\.json: syscalls\[0\]\.args\[0\]\.index: argument index 6 is out of range; .*use 0 to 5$/);
  });

  it('rejects an unknown operator', () => {
    expect(load('unknown-op.json')).toMatch(/unknown-op\.json: syscalls\[0\]\.args\[1\]\.op: "SCMP_CMP_BETWEEN" is not valid here; use one of SCMP_CMP_NE, .*SCMP_CMP_MASKED_EQ$/);
  });

  it('rejects a missing defaultAction', () => {
    expect(load('no-default-action.json')).toMatch(/no-default-action\.json: defaultAction: missing; add one of SCMP_ACT_ALLOW, /);
  });

  it('reports a missing file', () => {
    expect(load('absent.json')).toBe(`${fixture('absent.json')}: the policy file cannot be read (ENOENT); give a regular file (of JSON) that vjail can read`);
  });

  const inline = (json: unknown, opts = {}) => errorOf(() => parseOciPolicy(json, 'p.json', { knownSyscall: anyName, ...opts }));

  it('rejects other malformed fields, one line each', () => {
    const cases: [unknown, string][] = [
      [[1, 2], 'p.json: top level: expected a JSON object, got an array; write a seccomp profile'],
      [{ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read', 3], action: 'SCMP_ACT_ALLOW' }] },
        'p.json: syscalls[0].names[1]: expected a string, got 3; change it to a string'],
      [{ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: [], action: 'SCMP_ACT_ALLOW' }] },
        'p.json: syscalls[0].names: missing or empty; list at least one syscall name'],
      [{ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ name: 'a', names: ['b'], action: 'SCMP_ACT_ALLOW' }] },
        'p.json: syscalls[0]: has both "name" and "names"; keep only "names"'],
      [{ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW', errnoRet: 5 }] },
        'p.json: syscalls[0].errnoRet: SCMP_ACT_ALLOW takes no return code; remove it or use SCMP_ACT_ERRNO or SCMP_ACT_TRACE'],
      [{ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', errnoRet: 5000 }] },
        'p.json: syscalls[0].errnoRet: errno 5000 is above 4095'],
      [{ defaultAction: 'SCMP_ACT_KILL', defaultErrnoRet: 1 },
        'p.json: defaultErrnoRet: SCMP_ACT_KILL takes no return code'],
      [{ defaultAction: 'SCMP_ACT_ERRNO', architectures: ['SCMP_ARCH_X86'], archMap: [{ architecture: 'SCMP_ARCH_X86_64' }] },
        'p.json: archMap: given together with "architectures"; keep only one of them'],
      [{ defaultAction: 'SCMP_ACT_ERRNO', flags: ['SECCOMP_FILTER_FLAG_FAST'] },
        'p.json: flags[0]: "SECCOMP_FILTER_FLAG_FAST" is not valid here; use one of SECCOMP_FILTER_FLAG_TSYNC,'],
      [{ defaultAction: 'SCMP_ACT_ERRNO', listenerMetadata: 'x' },
        'p.json: listenerMetadata: set without listenerPath; remove listenerMetadata or add listenerPath'],
      [{ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['x'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, op: 'SCMP_CMP_EQ' }] }] },
        'p.json: syscalls[0].args[0].value: missing; add an unsigned 64-bit integer'],
      [{ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['x'], action: 'SCMP_ACT_ALLOW', includes: { minKernel: '4.8.1' } }] },
        'p.json: syscalls[0].includes.minKernel: "4.8.1" is not a kernel version; write "<major>.<minor>", e.g. "4.8"'],
      [{ defaultAction: 'SCMP_ACT_ERRNO', syscalls: {} },
        'p.json: syscalls: expected an array, got an object; change it to an array'],
      [{ ociVersion: '1.2.0', linux: {} },
        'p.json: linux.seccomp: missing; this config.json has no seccomp policy'],
      [{ ociVersion: '1.2.0', linux: { seccomp: { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['x'], action: 'ALLOW' }] } } },
        'p.json: linux.seccomp.syscalls[0].action: "ALLOW" is not valid here; use one of'],
    ];
    for (const [json, start] of cases) expect(inline(json)).toContain(start);
  });

  it('rejects a kernel release it cannot read', () => {
    expect(inline({ defaultAction: 'SCMP_ACT_ALLOW' }, { kernelRelease: 'latest' })).toBe(
      'kernel release "latest" is not understood; give it as "<major>.<minor>[...]", e.g. "5.15"',
    );
  });
});

describe('parseJsonExact', () => {
  it('parses like JSON.parse for ordinary documents', () => {
    const text = '{"a":[1,-2.5,3e2,true,false,null],"s":"x\\n\\u00e9\\"\\/","o":{}, "e":[]}';
    expect(parseJsonExact(text)).toEqual(JSON.parse(text));
  });

  it('turns unsafe integers into bigint and keeps safe ones as numbers', () => {
    expect(parseJsonExact('[9007199254740991, 9007199254740993, -9223372036854775808, 1e300]')).toEqual([
      9007199254740991, 9007199254740993n, -9223372036854775808n, 1e300,
    ]);
  });

  it('keeps "__proto__" as a plain key', () => {
    const v = parseJsonExact('{"__proto__": {"polluted": 1}}') as Record<string, unknown>;
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
    expect(Object.keys(v)).toEqual(['__proto__']);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it('refuses a key given twice and nesting past the limit, wherever the strings fool a quick look', () => {
    const tricky = '["a", ":", {"b": "\\":", "c\\"": [":", {"d": {}}]}]';
    expect(parseJsonExact(tricky)).toEqual(JSON.parse(tricky));
    const twice: [string, number][] = [
      ['{"a": 1, "a": 2}', 10],
      ['[{"x": {"y": 1, "z": ":", "y": 2}}]', 27],
      ['{"k\\"": 1, "k\\"": 2}', 12],
      // The colons a dropped value held, and one written as \u003a that would make up for a dropped key.
      ['{"a": ":", "a": 1}', 12],
      ['{"a": 1, "b": "\\u003a", "a": 2}', 25],
    ];
    for (const [text, column] of twice) {
      expect(() => parseJsonExact(text, { bigints: false })).toThrow(JsonSyntaxError);
      try {
        parseJsonExact(text);
      } catch (e) {
        expect(e).toMatchObject({ line: 1, column });
        expect((e as Error).message).toMatch(/appears twice in one object/);
      }
    }
    const nest = (n: number): string => '['.repeat(n) + ']'.repeat(n);
    expect(() => parseJsonExact(nest(MAX_DEPTH))).not.toThrow();
    expect(() => parseJsonExact(nest(MAX_DEPTH + 1))).toThrow(/nested more than 256 deep/);
  });

  it('reports line and column', () => {
    const cases: [string, string, number, number][] = [
      ['{\n  "a": 01\n}', "expected '}', found \"1\"", 2, 9],
      ['[1,\n 2', "expected ']', found end of input", 2, 3],
      ['{"a" 1}', "expected ':', found \"1\"", 1, 6],
      ['"abc', 'unterminated string', 1, 5],
      ['["\\x"]', 'bad escape \\x in string', 1, 4],
      ['[1] 2', 'unexpected "2" after the JSON value', 1, 5],
      ["{'a': 1}", 'expected a "quoted" property name, found "\'"', 1, 2],
    ];
    for (const [text, detail, line, column] of cases) {
      try {
        parseJsonExact(text);
        throw new Error(`no error for ${text}`);
      } catch (e) {
        expect(e).toBeInstanceOf(JsonSyntaxError);
        expect(e).toMatchObject({ detail, line, column });
      }
    }
  });
});
