/**
 * `npm run bench`: vjail against the kernel's floor and its peers, as ratios
 * from one run. Every variant of a group is run in turn, round after round
 * (the order rotating each round), and reported as the median of its rounds
 * with the min–max. See docs/BENCH.md for the method.
 *
 *   node dist/bench/run.js [--quick] [--json] [--only GROUP[,GROUP]]
 */
import { accessSync, constants as fsConstants, mkdtempSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { planJail } from '../src/jail.js';
import { dataPath } from '../src/paths.js';
import { loadOciPolicy } from '../src/policy/oci.js';
import { listProfiles, loadProfile } from '../src/profile/load.js';
import { BuildError, buildC } from './cc.js';
import { describeMachine, type Machine } from './machine.js';
import { capture, field, numberField, spinCpuMs, vjailCli } from './proc.js';
import { libseccompRules } from './rules.js';
import { runWithPlan, viaJavaScript } from './shim-path.js';
import { makeRows } from './make.js';
import { GROUPS, type GroupId, measure, type Row, type Variant, withRatios } from './measure.js';
import { checkpointGroup, checkpointReferences, checkpointTargets } from './checkpoint.js';
import { predumpRows, predumpTargets } from './predump.js';
import { lazyGroup, lazyTargets } from './lazy.js';
import { formatReport } from './table.js';
import { streamRatios, streamRows } from './stream.js';
import { migrateGroup, migrateTargets } from './migrate.js';
import { SEQUENTIAL_FULL, SEQUENTIAL_QUICK, sequentialGroup, sequentialTargets } from './sequential.js';

export { GROUPS, type GroupId, type Row };

export interface Target {
  id: string;
  description: string;
  value?: number;
  limit: number;
  unit: string;
  /** The value must reach the limit (a bandwidth), rather than stay under it. */
  atLeast?: boolean;
  met?: boolean;
  note?: string;
}

/** A number measured outside this run, printed beside a group for comparison. */
export interface Reference {
  group: GroupId;
  label: string;
  text: string;
  source: string;
}

export interface Report {
  machine: Machine;
  quick: boolean;
  params: Params;
  rows: Row[];
  references: Reference[];
  targets: Target[];
}

interface Params {
  rounds: number;
  interceptedCalls: number;
  allowedCalls: number;
  startupRounds: number;
  /** Working-set sizes of the checkpoint group: memcpy, write+fsync, dump, restore. */
  checkpointMiB: number[];
  checkpointRounds: number;
  /** C files of the generated project built by `make` (intercepted group), and its interleaved rounds. */
  makeFiles: number;
  makeRounds: number;
}

const FULL: Params = { rounds: 9, interceptedCalls: 20_000, allowedCalls: 2_000_000, startupRounds: 15, checkpointMiB: [16, 256, 1024], checkpointRounds: 5, makeFiles: 30, makeRounds: 5 };
const QUICK: Params = { rounds: 2, interceptedCalls: 200, allowedCalls: 2_000, startupRounds: 1, checkpointMiB: [16], checkpointRounds: 1, makeFiles: 2, makeRounds: 1 };

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, fsConstants.X_OK);
      return p;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

/** Build a bench/c program, or say why a variant needing it is skipped. */
function tryBuild(name: string, libs: string[] = []): { path?: string; why?: string } {
  try {
    return { path: buildC(name, libs) };
  } catch (e) {
    if (e instanceof BuildError) return { why: e.message };
    throw e;
  }
}

/** ns per call printed by callloop, checking who answered uname when `release` is given. */
function perCall(out: string, release?: RegExp): number {
  if (release) {
    const got = field(out, 'release');
    if (!release.test(got)) throw new Error(`uname answered "${got}", expected ${release}: the call was not intercepted as intended`);
  }
  return numberField(out, 'ns_per_call');
}

async function intercepted(p: Params, log: (s: string) => void): Promise<Row[]> {
  const loop = buildC('callloop');
  const floor = buildC('floor');
  const n = String(p.interceptedCalls);
  const work = [loop, 'uname', n];
  const us = (ns: number) => ns / 1000;
  const profile = loadProfile('linux-4.19');
  const nativePlan = planJail({ profile }).plan;
  const jsPlan = viaJavaScript(nativePlan, 'uname', 'uname');
  const release = /^4\.19\./;
  const strace = onPath('strace');
  const proot = onPath('proot');
  const variants: Variant[] = [
    {
      id: 'floor-sync',
      label: 'C floor, SYNC_WAKE_UP',
      unit: 'µs',
      sample: async () => us(perCall((await capture(floor, ['--sync', '--', ...work])).stdout, /^4\.19\.0-floor$/)),
    },
    {
      id: 'floor',
      label: 'C floor, plain wake-up',
      unit: 'µs',
      sample: async () => us(perCall((await capture(floor, ['--', ...work])).stdout, /^4\.19\.0-floor$/)),
    },
    {
      id: 'floor-poll',
      label: 'C floor + poll before RECV',
      unit: 'µs',
      sample: async () => us(perCall((await capture(floor, ['--sync', '--poll', '--', ...work])).stdout, /^4\.19\.0-floor$/)),
      note: 'what vjail\'s native thread did before it blocked in RECV directly (kept to show the cost of a poll)',
    },
    {
      id: 'floor-poll-idvalid',
      label: 'C floor + poll + ID_VALID',
      unit: 'µs',
      sample: async () => us(perCall((await capture(floor, ['--sync', '--poll', '--id-valid', '--', ...work])).stdout, /^4\.19\.0-floor$/)),
      note: 'the steps of vjail\'s native answer, in C',
    },
    {
      id: 'floor-handoff',
      label: 'C, same + hand-off to a 2nd thread',
      unit: 'µs',
      sample: async () =>
        us(perCall((await capture(floor, ['--sync', '--poll', '--id-valid', '--handoff', '--', ...work])).stdout, /^4\.19\.0-floor$/)),
      note: 'the route of vjail\'s JavaScript path (queue + eventfd + epoll on a second thread), without Node',
    },
    {
      id: 'vjail-native',
      label: 'vjail, native answer',
      unit: 'µs',
      sample: async () =>
        us(perCall((await capture(process.execPath, [vjailCli(), 'run', '--profile', 'linux-4.19', '--', ...work])).stdout, release)),
    },
    {
      id: 'vjail-js',
      label: 'vjail, JavaScript shim',
      unit: 'µs',
      sample: async () => us(perCall(await runWithPlan(work, jsPlan, profile), release)),
      note: 'receiver "auto": the Node loop receives while most calls need JavaScript',
    },
    {
      id: 'vjail-js-thread',
      label: 'vjail, JS shim, thread receiving',
      unit: 'µs',
      sample: async () => us(perCall(await runWithPlan(work, jsPlan, profile, { receiver: 'thread' }), release)),
      note: 'receiver "thread" forced: each call handed from the native thread to the Node loop',
    },
    {
      id: 'vjail-native-plain',
      label: 'vjail, native answer, plain wake-up',
      unit: 'µs',
      sample: async () => us(perCall(await runWithPlan(work, nativePlan, profile, { syncWakeUp: false }), release)),
      note: 'without SYNC_WAKE_UP (supervisor in the bench process; compare with "C floor, plain wake-up")',
    },
    {
      id: 'vjail-js-plain',
      label: 'vjail, JavaScript shim, plain wake-up',
      unit: 'µs',
      sample: async () => us(perCall(await runWithPlan(work, jsPlan, profile, { syncWakeUp: false }), release)),
      note: 'without SYNC_WAKE_UP',
    },
    {
      id: 'open-native',
      label: 'open+close, not intercepted',
      unit: 'µs',
      sample: async () => us(perCall((await capture(loop, ['open', n])).stdout)),
      note: 'the open row below without vjail',
    },
    {
      id: 'floor-open',
      label: 'C floor, open answered with ADDFD',
      unit: 'µs',
      sample: async () => us(perCall((await capture(floor, ['--sync', '--open', '--', loop, 'open', n])).stdout)),
      note: 'the least an open answered on the caller\'s behalf costs: read the path, open, ADDFD with SEND, close',
    },
    {
      id: 'floor-open-spin',
      label: 'C floor, ADDFD, CPUs kept awake',
      unit: 'µs',
      sample: async () => us(perCall((await capture(floor, ['--sync', '--open', '--spin', '--', loop, 'open', n])).stdout)),
      note: 'the row above with a SCHED_IDLE thread spinning on every CPU for the whole run, so that no wake-up waits for a halted CPU',
    },
    {
      id: 'open-shim',
      label: 'open+close through the open shim',
      unit: 'µs',
      sample: async () =>
        us(perCall((await capture(process.execPath, [vjailCli(), 'run', '--profile', 'linux-4.19', '--kernel-files', 'shim', '--', loop, 'open', n])).stdout)),
      note: 'linux-4.19 with --kernel-files shim: every open is made by the supervisor and installed with ADDFD (--spin off, the default: no CPU is kept awake)',
    },
    {
      id: 'open-shim-resident',
      label: 'open+close through the shim, resident',
      unit: 'µs',
      sample: async () =>
        us(perCall((await capture(vjailCli(), ['run', '--profile', 'linux-4.19', '--kernel-files', 'shim', '--', loop, 'open', n])).stdout)),
      note: 'the row above run as a command: the native front end and the resident supervisor (as the make rows are), not the Node CLI; the resident stays in the session (the autogroup) of the bench that started it, as the jail is',
    },
    {
      id: 'open-shim-spin',
      label: 'open+close through the shim, --spin auto',
      unit: 'µs',
      sample: async () =>
        us(perCall((await capture(process.execPath, [vjailCli(), 'run', '--profile', 'linux-4.19', '--kernel-files', 'shim', '--spin', 'auto', '--', loop, 'open', n])).stdout)),
      note: 'the open-shim row with spinners keeping idle CPUs awake during the burst, so that neither of ADDFD\'s two wake-ups waits for a halted CPU',
    },
    {
      id: 'open-shim-spin-cpu',
      label: 'CPU time the spinners use, per open',
      unit: 'µs',
      sample: async () => {
        const out = await capture(process.execPath, [vjailCli(), 'run', '--stats', '--spin', 'auto', '--profile', 'linux-4.19', '--kernel-files', 'shim', '--', loop, 'open', n]);
        return (spinCpuMs(out.stderr) * 1000) / Number(n);
      },
      note: 'of an open-shim run with --spin auto (from its --stats): CPU time of the spinner threads over the run, divided by the opens; a spinner only takes CPU time no other task wants',
    },
    {
      id: 'open-shim-nobody',
      label: 'open+close through the shim, as nobody',
      unit: 'µs',
      sample: async () =>
        us(
          perCall(
            (await capture(process.execPath, [vjailCli(), 'run', '--profile', 'linux-4.19', '--kernel-files', 'shim', '--', 'setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', loop, 'open', n])).stdout,
          ),
        ),
      note: 'the supervisor wears the caller\'s identity for each open',
    },
    strace
      ? {
          id: 'strace',
          label: 'strace -f -e trace=uname',
          unit: 'µs',
          sample: async () => us(perCall((await capture(strace, ['-f', '-qq', '-e', 'trace=uname', '-o', '/dev/null', ...work])).stdout)),
        }
      : { id: 'strace', label: 'strace', unit: 'µs', skip: 'strace is not installed (apt: strace)' },
    proot
      ? {
          id: 'proot',
          label: 'proot (ptrace)',
          unit: 'µs',
          sample: async () => us(perCall((await capture(proot, work)).stdout)),
          note: 'uname passed through to the host kernel after the ptrace stop (proot -k breaks dynamic binaries here)',
        }
      : { id: 'proot', label: 'proot', unit: 'µs', skip: 'proot is not installed (apt: proot)' },
    { id: 'gvisor', label: 'gVisor runsc (systrap)', unit: 'µs', skip: 'runsc is not packaged in Debian; not available' },
  ];
  const rows = withRatios(await measure('intercepted', variants, p.rounds, log), 'intercepted.floor-sync');
  return [...rows, ...(await makeRows(p.makeFiles, p.makeRounds, log))];
}

/**
 * The profile whose filter on this host has the most instructions, and that
 * filter. Planned with the kernel files mounted (as `vjail run` does as
 * root), so that opening files is not a notification: the loader has no
 * supervisor to answer one.
 */
function largestFilter(): { profile: string; filter: Buffer } {
  let best = { profile: 'host', filter: Buffer.alloc(0) };
  for (const profile of listProfiles()) {
    const { filter } = planJail({ profile, kernelFilesMounted: true });
    if (filter.length > best.filter.length) best = { profile: profile.name, filter: Buffer.from(filter) };
  }
  return best;
}

async function allowed(p: Params, dir: string, log: (s: string) => void): Promise<Row[]> {
  const loop = buildC('callloop');
  const seccomp = tryBuild('loadfilter', ['-lseccomp']);
  if (!seccomp.path) {
    const why = `${seccomp.why} (apt: libseccomp-dev)`;
    return ['getppid', 'personality', 'prctl'].map((s) => ({
      group: 'allowed' as const,
      id: `allowed.${s}`,
      label: s,
      unit: 'ns',
      status: 'skipped' as const,
      note: why,
    }));
  }
  const loader = seccomp.path;
  const dockerPath = dataPath('test', 'fixtures', 'policies', 'docker-default.json');
  const docker = loadOciPolicy(dockerPath);
  const hostBpf = join(dir, 'vjail-host.bpf');
  const dockerBpf = join(dir, 'vjail-docker.bpf');
  const dockerRules = join(dir, 'docker.rules');
  const largest = largestFilter();
  const largestBpf = join(dir, 'vjail-largest.bpf');
  writeFileSync(largestBpf, largest.filter);
  writeFileSync(hostBpf, planJail({ profile: 'host' }).filter);
  writeFileSync(dockerBpf, planJail({ profile: 'host', policy: docker }).filter);
  writeFileSync(dockerRules, libseccompRules(docker));
  const filters: [string, string, string[]][] = [
    ['none', 'no filter', ['--none']],
    ['vjail-host', 'vjail filter, host profile', ['--bpf', hostBpf]],
    ['vjail-largest', `vjail filter, ${largest.profile} (largest)`, ['--bpf', largestBpf]],
    ['vjail-docker', 'vjail filter, Docker default', ['--bpf', dockerBpf]],
    ['libseccomp-docker', 'libseccomp, Docker default', ['--rules', dockerRules]],
    ['libseccomp-docker-tree', 'libseccomp binary tree, Docker default', ['--rules', dockerRules, '--tree']],
  ];
  const variants: Variant[] = [];
  for (const sys of ['getppid', 'personality', 'prctl']) {
    for (const [id, label, args] of filters) {
      variants.push({
        id: `${sys}.${id}`,
        label: `${sys}: ${label}`,
        unit: 'ns',
        sample: async () => perCall((await capture(loader, [...args, '--', loop, sys, String(p.allowedCalls)])).stdout),
      });
    }
  }
  const rows = await measure('allowed', variants, p.rounds, log);
  for (const sys of ['getppid', 'personality', 'prctl']) withRatios(rows.filter((r) => r.id.startsWith(`allowed.${sys}.`)), `allowed.${sys}.libseccomp-docker`);
  return rows;
}

/**
 * Bring vjail's caches to where any earlier `vjail run` since the last build
 * or boot leaves them: V8's code for the bundle (kept only once the bundle
 * file is 2 s old), the validated profile, the probe results, the plan.
 */
async function warmVjail(node: string): Promise<void> {
  const bundle = dataPath('dist', 'cli', 'run.cjs');
  const age = Date.now() - statSync(bundle).ctimeMs;
  if (age < 2100) await new Promise((r) => setTimeout(r, 2100 - age));
  for (let i = 0; i < 2; i++) await capture(node, [vjailCli(), 'run', '--', '/bin/true']);
}

async function startup(p: Params, log: (s: string) => void): Promise<Row[]> {
  const spawntime = buildC('spawntime');
  const time = async (argv: string[], env?: NodeJS.ProcessEnv) => {
    const out = (await capture(spawntime, ['1', '--', ...argv], { env })).stdout;
    return numberField(out, 'ns') / 1e6;
  };
  const node = process.execPath;
  await warmVjail(node);
  /** A fresh, empty cache directory for each cold run. */
  const coldCaches = mkdtempSync(join(tmpdir(), 'vjail-bench-cold-'));
  let cold = 0;
  const bwrap = onPath('bwrap');
  const proot = onPath('proot');
  const importCli = `await import(${JSON.stringify(new URL('../src/cli/main.js', import.meta.url).href)})`;
  const variants: Variant[] = [
    { id: 'true', label: 'bare exec of /bin/true', unit: 'ms', sample: () => time(['/bin/true']) },
    { id: 'node', label: "node -e ''", unit: 'ms', sample: () => time([node, '-e', '']) },
    {
      id: 'node-import',
      label: 'node, import the vjail CLI modules',
      unit: 'ms',
      sample: () => time([node, '--input-type=module', '-e', importCli]),
    },
    {
      id: 'node-zod',
      label: 'node, import zod only',
      unit: 'ms',
      sample: () => time([node, '--input-type=module', '-e', `await import(${JSON.stringify(import.meta.resolve('zod'))})`]),
    },
    { id: 'vjail', label: 'vjail run -- /bin/true', unit: 'ms', sample: () => time([node, vjailCli(), 'run', '--', '/bin/true']) },
    {
      id: 'vjail-cold',
      label: 'vjail run -- /bin/true, caches empty',
      unit: 'ms',
      sample: () => time([node, vjailCli(), 'run', '--', '/bin/true'], { ...process.env, VJAIL_CACHE_DIR: join(coldCaches, String(cold++)) }),
    },
    bwrap
      ? { id: 'bwrap', label: 'bwrap --ro-bind / / /bin/true', unit: 'ms', sample: () => time([bwrap, '--ro-bind', '/', '/', '/bin/true']) }
      : { id: 'bwrap', label: 'bwrap', unit: 'ms', skip: 'bwrap is not installed (apt: bubblewrap)' },
    proot
      ? { id: 'proot', label: 'proot /bin/true', unit: 'ms', sample: () => time([proot, '/bin/true']) }
      : { id: 'proot', label: 'proot', unit: 'ms', skip: 'proot is not installed (apt: proot)' },
    { id: 'runsc', label: 'gVisor runsc', unit: 'ms', skip: 'runsc is not packaged in Debian; not available' },
  ];
  const rows = await measure('startup', variants, p.startupRounds, log);
  rmSync(coldCaches, { recursive: true, force: true });
  return withRatios(rows, 'startup.true');
}

function targets(rows: Row[]): Target[] {
  const get = (id: string) => rows.find((r) => r.id === id);
  const out: Target[] = [];
  const ratioTarget = (id: string, description: string, rowId: string, limit: number) => {
    const r = get(rowId);
    if (!r) return;
    const value = r.ratio;
    out.push(
      value === undefined
        ? { id, description, limit, unit: '×', note: r.note ?? 'not measured' }
        : { id, description, value, limit, unit: '×', met: value <= limit },
    );
  };
  ratioTarget('fast-path', 'vjail native answer ≤ 1.3× the C floor (SYNC_WAKE_UP)', 'intercepted.vjail-native', 1.3);
  ratioTarget('js-path', 'vjail JavaScript shim ≤ 2× the C floor (SYNC_WAKE_UP)', 'intercepted.vjail-js', 2);
  for (const [rowId, who] of [['intercepted.open-shim', 'root'], ['intercepted.open-shim-nobody', 'nobody']] as const) {
    const r = get(rowId);
    const description = `open+close through the open shim as ${who} ≤ 30 µs (median)`;
    if (r?.summary) out.push({ id: `open-shim-${who}`, description, value: r.summary.median, limit: 30, unit: 'µs', met: r.summary.median <= 30 });
    else if (r) out.push({ id: `open-shim-${who}`, description, limit: 30, unit: 'µs', note: r.note ?? 'not measured' });
  }
  ratioTarget('make-shim', 'make of a small C project as nobody through the open shim ≤ 1.2× native', 'intercepted.make-shim', 1.2);
  const cacheNotes: Record<string, string> = {
    getppid: "the kernel's action cache skips both filters (constant allow): any difference is noise, compare with 'no filter'",
    personality: 'both filters run: allowed by an argument rule in Docker\'s policy',
    prctl: "vjail's filter runs (its launch-handshake rule reads arg 0); libseccomp's is skipped by the action cache",
  };
  for (const sys of ['getppid', 'personality', 'prctl']) {
    ratioTarget(`allowed-${sys}`, `allowed ${sys} under vjail's Docker filter ≤ 1.1× libseccomp's`, `allowed.${sys}.vjail-docker`, 1.1);
    const t = out[out.length - 1];
    if (t?.id === `allowed-${sys}` && t.value !== undefined) t.note = cacheNotes[sys];
  }
  const vjail = get('startup.vjail')?.summary?.median;
  const node = get('startup.node')?.summary?.median;
  out.push(
    vjail !== undefined && node !== undefined
      ? { id: 'startup', description: 'vjail run start-up beyond node -e \'\' ≤ 10 ms', value: vjail - node, limit: 10, unit: 'ms', met: vjail - node <= 10 }
      : { id: 'startup', description: 'vjail run start-up beyond node -e \'\' ≤ 10 ms', limit: 10, unit: 'ms', note: 'not measured' },
  );
  out.push(...checkpointTargets(rows), ...migrateTargets(rows), ...predumpTargets(rows));
  out.push(...lazyTargets(rows));
  out.push(...sequentialTargets(rows));
  return out;
}

export async function runBench(opts: { quick?: boolean; only?: GroupId[]; log?: (s: string) => void } = {}): Promise<Report> {
  const params = opts.quick ? QUICK : FULL;
  const log = opts.log ?? (() => {});
  const only = new Set(opts.only ?? GROUPS);
  const dir = mkdtempSync(join(tmpdir(), 'vjail-bench-'));
  const rows: Row[] = [];
  try {
    if (only.has('intercepted')) rows.push(...(await intercepted(params, log)));
    if (only.has('allowed')) rows.push(...(await allowed(params, dir, log)));
    if (only.has('startup')) rows.push(...(await startup(params, log)));
    if (only.has('sequential')) rows.push(...(await sequentialGroup(opts.quick ? SEQUENTIAL_QUICK : SEQUENTIAL_FULL, onPath('bwrap'), log)));
    if (only.has('checkpoint')) {
      rows.push(...(await checkpointGroup(params, dir, log)));
      rows.push(...(await streamRows(params, dir, log)));
      rows.push(...(await predumpRows(params, dir, log)));
      streamRatios(rows);
    }
    if (only.has('lazy')) rows.push(...(await lazyGroup(params, dir, log)));
    if (only.has('migrate')) rows.push(...(await migrateGroup(params, dir, log)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const references = only.has('checkpoint') ? checkpointReferences() : [];
  return { machine: describeMachine(), quick: !!opts.quick, params, rows, references, targets: targets(rows) };
}

function parseArgs(argv: string[]): { quick: boolean; json: boolean; only?: GroupId[] } {
  let quick = false;
  let json = false;
  let only: GroupId[] | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quick') quick = true;
    else if (a === '--json') json = true;
    else if (a === '--only' && argv[i + 1]) {
      only = argv[++i]!.split(',') as GroupId[];
      const bad = only.filter((g) => !GROUPS.includes(g));
      if (bad.length) throw new Error(`unknown group ${bad.join(', ')}; groups: ${GROUPS.join(', ')}`);
    } else throw new Error(`unknown argument ${a}; usage: run.js [--quick] [--json] [--only ${GROUPS.join(',')}]`);
  }
  return { quick, json, only };
}

async function main(): Promise<void> {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`bench: ${(e as Error).message}\n`);
    process.exit(2);
  }
  const report = await runBench({ quick: args.quick, only: args.only, log: (s) => process.stderr.write(`bench: ${s}\n`) });
  process.stdout.write(args.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
}

if (process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))) {
  main().catch((e) => {
    process.stderr.write(`bench: ${e instanceof Error ? e.stack : String(e)}\n`);
    process.exit(1);
  });
}
