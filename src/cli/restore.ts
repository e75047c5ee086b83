import { fstatSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { restore } from '../checkpoint/restore.js';
import type { LazyStats } from '../checkpoint/parts/lazy.js';
import { type Manifest, type OpenedImage } from '../image/format.js';
import { warmManifestChecks } from '../image/read.js';
import { fileHashes } from '../checkpoint/parts/memory.js';
import { startHasher } from '../image/pagedata.js';
import { type Jail, prepareJail } from '../jail.js';
import { writeAtomic, jailDir, readState, removeJailDir } from '../jails/state.js';
import { Socket } from 'node:net';
import { native } from '../native.js';
import { detach, type DetachOptions, type DetachPrint, NamedJail, prestart } from '../jails/supervise.js';
import { asUserError, pageBytes, processSummary } from './checkpoint.js';
import { UsageError, userMessage } from './errors.js';
import { ProgressLine, StepClock, stderrIsTTY } from './progress.js';
import { logMaxSize, ownLogPipe, selfCheckpoints } from './run.js';
import { needsUnpacking, plainImage } from './stream.js';
import { StepTimer } from '../timings.js';
import { type PrelaunchedRestorer, prelaunchRestorer, type RestorerLaunch } from '../checkpoint/restorer-launch.js';
import { type LaunchHint, launchHintSchema } from '../migrate/protocol.js';
import type { LogPipe } from '../jails/log-pipe.js';
import { performance } from 'node:perf_hooks';

export interface RestoreFlags {
  /** Register the restored jail under this name. */
  name?: string;
  /** Restore in a background supervisor, its stdio to the jail's (fresh) log. */
  detach?: boolean;
  /** Set on that background supervisor. */
  supervise?: boolean;
  /** Restore on a CPU lacking instruction-set extensions the image may use. */
  force?: boolean;
  /** Report each restore step on stderr. */
  verbose?: boolean;
  /** `FD:KEY`: our descriptor FD stands in for the image's external description KEY. */
  inheritFd?: string[];
  /** No step lines and no progress line (warnings and errors still). */
  quiet?: boolean;
  /** Print the result as JSON on stdout once restored. */
  json?: boolean;
  /** Bound of a detached jail's log, e.g. "10M". */
  logMaxSize?: string;
  /** Enforce this policy file, not the image's own. */
  policy?: string;
  /** Restore only if signed with this key. */
  verifyKey?: string;
  /** Accept an unauthenticated image's own policy. */
  trustImage?: boolean;
  /** The 32-byte key an encrypted stream or packed image was made with. */
  encryptKey?: string;
  /** Let the processes run before their private anonymous memory is in place (pages arrive on touch and by prefetch). */
  lazy?: boolean;
  /** Started before the image is there (a page server's, at a migration's handshake): read its directory as one line from this descriptor. */
  imageFromFd?: string;
  /** With --image-from-fd: how the sender says the jail runs there (JSON, protocol.ts LaunchHint), to start the restorer before the image comes. */
  launchHint?: string;
}

/** `--inherit-fd FD:KEY` values: each FD must be open here. */
function inheritMap(values: string[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const v of values) {
    const m = /^(\d+):(.+)$/.exec(v);
    if (!m) throw new UsageError(`--inherit-fd takes FD:KEY (for example 1:pipe:[12345], the key "vjail inspect" shows), not "${v}"`);
    const fd = Number(m[1]);
    try {
      fstatSync(fd);
    } catch {
      throw new UsageError(`--inherit-fd ${v}: descriptor ${fd} is not open in this shell; open it (e.g. "${fd}>file") or pick another`);
    }
    out.set(m[2]!, fd);
  }
  return out;
}

/** The restored program's command line (its argv area is back in place), else a description. */
function commandOf(pid: number, dir: string): string[] {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
    if (argv.length > 0) return argv;
  } catch {
    // gone
  }
  return [`(restored from ${dir})`];
}

/** Where a background supervisor leaves its --json result for `detach` to print. */
const resultPath = (name: string): string => join(jailDir(name), 'restore.json');

/**
 * Start the background supervisor of `vjail restore DIR --name NAME
 * --supervise --json ARGS` (`args`, all of it) and print its result (JSON,
 * as the supervisor wrote it) once the jail runs, or why not. A page
 * server calls this itself, with its own `print`.
 */
export async function detachJson(dir: string, name: string, args: string[], print?: DetachPrint): Promise<number> {
  rmSync(resultPath(name), { force: true }); // a previous jail's of that name
  return detach(name, args, jsonResult(dir, name, print));
}

/** What `detachJson` prints: the supervisor's result, or why it failed. */
function jsonResult(dir: string, name: string, print?: DetachPrint): DetachOptions {
  return {
    print,
    output: () => {
      try {
        return readFileSync(resultPath(name), 'utf8');
      } catch {
        return `${JSON.stringify({ ok: true, image: resolve(dir), name })}\n`;
      }
    },
    failed: (error) => `${JSON.stringify({ ok: false, image: resolve(dir), name, error })}\n`,
  };
}

/** A background supervisor started before its image is there: `detachJson`, in two steps (see `prestart`). */
export interface PrestartedJson {
  go(dir: string, print?: DetachPrint): Promise<number>;
  cancel(): Promise<void>;
}

/**
 * Start the background supervisor of `vjail restore - --image-from-fd 3
 * --name NAME --supervise --json ARGS` (`args`, all of it) now; `go` hands
 * it the image and prints its result as `detachJson` does.
 */
export function prestartJson(name: string, args: string[]): PrestartedJson {
  const pre = prestart(name, args);
  rmSync(resultPath(name), { force: true }); // a previous jail's of that name
  return { go: (dir, print) => pre.go(resolve(dir), jsonResult(dir, name, print)), cancel: () => pre.cancel() };
}

/**
 * `vjail restore DIR|-`: bring the process back in a new jail and wait for
 * it, like `vjail run`. A stream (`-`) or a packed image is first received
 * into a temporary directory and checked in full: nothing of the jail
 * starts from an image that is cut short, damaged or of another key.
 */
export async function restoreCommand(dir: string, flags: RestoreFlags = {}): Promise<number> {
  if (flags.imageFromFd !== undefined) {
    if (dir !== '-' || !flags.supervise || !flags.name) throw new UsageError('--image-from-fd FD is for a supervisor started by a page server: restore - --image-from-fd FD --name NAME --supervise');
    const fd = Number(flags.imageFromFd);
    if (!Number.isInteger(fd) || fd < 3) throw new UsageError(`--image-from-fd takes a descriptor number above 2, not "${flags.imageFromFd}"`);
    // The name is taken now (the jail "starting" until it runs), its cgroup made: not while the sender's jail is stopped.
    const named = NamedJail.claim({ name: flags.name, profile: 'host', policy: null, emulate: [], pidNs: false, command: [], detached: true });
    let got: { dir: string | null; answer: (line: string) => void };
    let prepared: Prepared | undefined;
    try {
      prepared = await prepareBeforeImage(named, flags);
      got = await imageDirFrom(fd);
    } catch (e) {
      await prepared?.prelaunched?.discard().catch(() => {});
      named.abandon();
      throw e;
    }
    if (got.dir === null) {
      await prepared.prelaunched?.discard().catch(() => {});
      prepared.logPipe?.closeWriteEnd();
      named.abandon();
      if (!readState(flags.name)) removeJailDir(flags.name);
      return 0;
    }
    try {
      return await restoreDirCommand(got.dir, flags, undefined, named, got.answer, prepared);
    } finally {
      // Not taken (the image asked for another launch, or the restore failed first): ended, not left waiting.
      await prepared.prelaunched?.discard();
    }
  }
  if (!needsUnpacking(dir)) {
    if (flags.encryptKey !== undefined) throw new UsageError(`${dir} is a plain image directory, not encrypted; leave out --encrypt-key`);
    return restoreDirCommand(dir, flags);
  }
  if (flags.detach && !flags.name) throw new UsageError('--detach needs a name for the restored jail: add --name NAME');
  let plain: Awaited<ReturnType<typeof plainImage>>;
  try {
    plain = await plainImage(dir, flags.encryptKey);
  } catch (e) {
    throw asUserError(e, 'restore');
  }
  let removed = false;
  const cleanup = (): void => {
    if (!removed) plain.cleanup();
    removed = true;
  };
  try {
    return await restoreDirCommand(plain.dir, flags, cleanup);
  } finally {
    cleanup();
  }
}

/** What a supervisor started before its image prepares for the restore: the jail's log pipe, and its restorer if the sender said how the jail runs. */
interface Prepared {
  logPipe?: LogPipe;
  prelaunched?: PrelaunchedRestorer;
}

/**
 * Before the image: the log pipe the restored jail writes to, and, from the
 * sender's launch hint, its restorer started as the image will most likely
 * ask (restorer-launch.ts; the restore takes it only if the image does).
 * Not where the jail would run under a policy of its own or in a new time
 * namespace: neither is known before the image.
 */
async function prepareBeforeImage(named: NamedJail, flags: RestoreFlags): Promise<Prepared> {
  const logBound = await logMaxSize(flags.logMaxSize, true);
  const logPipe = logBound ? await ownLogPipe(named.name, logBound) : undefined;
  if (flags.launchHint === undefined) return { logPipe };
  let hint: LaunchHint;
  try {
    hint = launchHintSchema.parse(JSON.parse(flags.launchHint));
  } catch {
    throw new UsageError('--launch-hint takes the JSON a page server passes on from the sender (protocol.ts LaunchHint)');
  }
  if (hint.policy && !flags.policy) return { logPipe };
  const launch: RestorerLaunch = {
    profile: hint.profile,
    policy: flags.policy,
    emulate: hint.emulate,
    pidNs: hint.pidNamespace,
    userNs: hint.userNamespace ?? undefined,
    cgroup: named.cgroup?.path,
    timeOffsets: undefined,
    stdio: restoredStdio(logPipe),
  };
  return { logPipe, prelaunched: prelaunchRestorer(launch) };
}

/** The restored jail's standard streams: its output into the bounded log's pipe, when there is one. */
function restoredStdio(logPipe: LogPipe | undefined): RestorerLaunch['stdio'] {
  return logPipe ? ['inherit', logPipe.writeFd, logPipe.writeFd] : undefined;
}

/** How long a pre-started supervisor waits for its image: a migration's rounds are sent while the jail runs there, and may take long. */
export const PRESTART_WAIT_MS = 3_600_000;

/**
 * A supervisor started before its image is there: load what can be loaded
 * without it (the addon, the hashing worker; the manifest's checks and the
 * default profile's plan, run once), then wait (bounded) for the image directory's path
 * on `fd`. Its end without one (the sender went away, the image was refused):
 * null, and this supervisor ends having started nothing, leaving nothing
 * (the name given back, the jail's log removed with its directory). With
 * the path comes a way to answer on the same descriptor (a page server's
 * socket pair), on which the result line goes back as soon as the jail runs.
 */
async function imageDirFrom(fd: number): Promise<{ dir: string | null; answer: (line: string) => void }> {
  native();
  startHasher();
  warmManifestChecks();
  // The default profile's plan and filter, as a jail under it is started (its tables, the BPF compiler, run once).
  try {
    prepareJail({ profile: 'host' });
  } catch {
    // only a warm-up: the restore says what fails, if anything does
  }
  // Half-open: the page server ends its side once the path is sent, ours stays open for the answer.
  const sock = new Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
  sock.on('error', () => {}); // no answer then: the page server reads the jail's state instead
  let text = '';
  let kept = false;
  let timer: NodeJS.Timeout | undefined;
  try {
    const line = await new Promise<string | null>((resolve, reject) => {
      timer = setTimeout(() => reject(new UsageError(`no image came within ${PRESTART_WAIT_MS / 1000} s on descriptor ${fd} (the page server that started this supervisor gives it once the sender's jail is stopped)`)), PRESTART_WAIT_MS);
      sock.setEncoding('utf8');
      sock.on('data', (d: string) => {
        text += d;
        const nl = text.indexOf('\n');
        if (nl >= 0) resolve(text.slice(0, nl));
      });
      sock.on('end', () => resolve(null));
      sock.on('close', () => resolve(null));
      sock.on('error', () => resolve(null));
    });
    if (line === null || line === '') return { dir: null, answer: () => {} };
    sock.pause();
    sock.unref();
    kept = true;
    return { dir: line, answer: (result) => void sock.end(`${result}\n`) };
  } finally {
    clearTimeout(timer);
    if (!kept) sock.destroy();
  }
}

/** Restore from an image directory; `restored` is called once nothing more is read from it. `claimed`: the name, taken already. */
async function restoreDirCommand(dir: string, flags: RestoreFlags, restored?: () => void, claimed?: NamedJail, answer?: (line: string) => void, prepared?: Prepared): Promise<number> {
  const timer = new StepTimer('restore command');
  timer.lap(`since the process started (${performance.now().toFixed(2)} ms)`);
  if (flags.detach && !flags.name) throw new UsageError('--detach needs a name for the restored jail: add --name NAME');
  if (flags.detach && flags.inheritFd?.length) throw new UsageError('--inherit-fd cannot be combined with --detach yet (the background supervisor does not receive your descriptors); restore in the foreground');
  const inherit = inheritMap(flags.inheritFd ?? []);
  const logBound = await logMaxSize(flags.logMaxSize, flags.detach || flags.supervise);
  if (flags.detach) {
    const name = flags.name!;
    const args = ['restore', resolve(dir), '--name', name, '--supervise', ...(flags.force ? ['--force'] : []), ...(flags.lazy ? ['--lazy'] : []), ...(flags.json ? ['--json'] : [])];
    if (flags.logMaxSize) args.push('--log-max-size', flags.logMaxSize);
    if (flags.policy) args.push('--policy', resolve(flags.policy));
    if (flags.verifyKey) args.push('--verify-key', resolve(flags.verifyKey));
    if (flags.trustImage) args.push('--trust-image');
    if (!flags.json) return detach(name, args);
    return detachJson(dir, name, args);
  }
  const named = claimed ?? (flags.name
    ? NamedJail.claim({ name: flags.name, profile: 'host', policy: null, emulate: [], pidNs: false, command: [], detached: !!flags.supervise, restoredFrom: resolve(dir) })
    : undefined);
  timer.lap('name claimed');
  const clock = new StepClock();
  const warnings: string[] = [];
  const progress = new ProgressLine('restore', 'loaded', stderrIsTTY() && !flags.quiet && !flags.supervise);
  const say = (line: string): void => {
    progress.finish();
    process.stderr.write(`${line}\n`);
  };
  let jail: Jail;
  // The manifest restore() read and checked.
  let manifest: Manifest | undefined;
  // The restored jail's output follows our fds 1 and 2: with a bounded log, the pipe read into it.
  const logPipe = prepared ? prepared.logPipe : named && flags.supervise && logBound ? await ownLogPipe(named.name, logBound) : undefined;
  let lazyResult: Promise<{ error: string | null; stats: LazyStats[] }> | undefined;
  let resumedAt: bigint | undefined;
  let self: Awaited<ReturnType<typeof listenAsBefore>>;
  try {
    const report = (step: string, detail: string): void => {
      clock.mark(step);
      if (flags.verbose && !flags.quiet) say(`vjail: restore ${step}: ${detail}`);
    };
    const warn = (line: string): void => {
      warnings.push(line);
      say(`vjail: warning: ${line}`);
    };
    // Listen for the restored jail's checkpoint requests before any of its processes runs.
    const beforeResume = async (pid: number): Promise<void> => void (self = await listenAsBefore(pid, !!flags.supervise));
    // CLOCK_MONOTONIC (libuv's hrtime), which the page server reading the answer shares: it says how long the jail has run.
    const resumed = (): void => void (resumedAt = process.hrtime.bigint());
    const policy = { named: flags.policy, verifyKey: flags.verifyKey, trustImage: flags.trustImage, say: (line: string) => (flags.quiet ? undefined : say(`vjail: ${line}`)) };
    const lazy = flags.lazy ? { lazy: true, lazyDone: (r: typeof lazyResult) => void (lazyResult = r) } : {};
    const stdio = logPipe ? { stdio: restoredStdio(logPipe) } : {};
    const opened = (image: OpenedImage): void => void (manifest = image.manifest);
    const opts = { image: dir, opened, force: flags.force, report, warn, inherit, beforeResume, resumed, policy, prelaunched: prepared?.prelaunched, progress: (bytes: number, total: number) => progress.add(bytes, total), ...lazy, ...stdio };
    jail = named ? await named.start((cgroup) => restore({ ...opts, cgroup })) : await restore(opts);
    logPipe?.closeWriteEnd();
  } catch (e) {
    logPipe?.closeWriteEnd();
    progress.finish();
    void self?.server.close();
    named?.abandon();
    const err = asUserError(e, 'restore');
    if (flags.json && !flags.supervise) {
      const error = userMessage(err) ?? (err instanceof Error ? err.message : String(err));
      process.stdout.write(`${JSON.stringify({ ok: false, image: resolve(dir), name: flags.name ?? null, error, warnings })}\n`);
    }
    throw err;
  }
  progress.finish();
  timer.lap('restore');
  // A lazy restore reads page files until every page is in place.
  if (lazyResult) void lazyResult.finally(() => restored?.());
  else restored?.();
  let result: object | undefined;
  if (flags.json) {
    result = {
      ok: true,
      image: resolve(dir),
      name: flags.name ?? null,
      pid: jail.pid,
      pidNamespace: manifest!.pidNamespace,
      processes: processSummary(manifest!),
      bytes: pageBytes(manifest!),
      timings: clock.timings(),
      warnings,
    };
    // One line: a foreground jail's own output may follow at once on the same stdout.
    // Read at once by the vjail that started this supervisor: whole when read (renamed into place), it need not be synced.
    if (flags.supervise && named) writeAtomic(resultPath(named.name), `${JSON.stringify(result, null, 2)}\n`, { sync: false });
    else process.stdout.write(`${JSON.stringify(result)}\n`);
  }
  if (named) {
    const { profile, policy, emulate, pidNamespace } = manifest!;
    named.running(jail.pid, { command: commandOf(jail.pid, dir), profile, policy: flags.policy ? resolve(flags.policy) : (policy ?? null), emulate, pidNs: pidNamespace, restoredFrom: resolve(dir) });
  }
  // The state says running: a page server waiting on our fd 3 has its answer now, not at its next look at the state.
  if (result) answer?.(JSON.stringify({ ...result, resumedAtNs: resumedAt?.toString() }));
  timer.lap('result and state');
  // The jail runs and is answered for: the hashes of its mapped files go to the cache for the next restore.
  fileHashes.persist();
  void lazyResult?.then(({ error, stats }) => {
    if (error || !flags.verbose || flags.quiet) return;
    const sum = (k: keyof LazyStats): number => stats.reduce((n, s) => n + s[k], 0);
    say(`vjail: restore lazy: every page in place after ${Math.round(Math.max(0, ...stats.map((s) => s.ms)))} ms: ${sum('faults')} fault(s), ${sum('chunksOnFault')} chunk(s) loaded on a fault, ${sum('chunksPrefetched')} by prefetch, ${sum('forks')} fork(s) served`);
  });
  const forward = (sig: NodeJS.Signals): void => jail.kill(sig);
  const forwarded: NodeJS.Signals[] = ['SIGTERM', 'SIGHUP', 'SIGUSR1', 'SIGUSR2'];
  for (const s of forwarded) process.on(s, forward);
  const exit = await jail.exited;
  await logPipe?.drained();
  // A page refused by a lazy restore killed the jail: say why (its servers end once the jail is gone).
  const lazyError = (await lazyResult)?.error;
  if (lazyError) say(`vjail: error: ${lazyError}`);
  await self?.server.close();
  named?.ended(exit);
  for (const s of forwarded) process.off(s, forward);
  if (lazyError) return 1;
  return self?.ended && exit.status === 128 + 9 ? 0 : exit.status;
}

/**
 * A jail run with --self-checkpoint has the listener's name in its
 * environment, restored with its memory: listen there again, if it is free
 * (with --leave-running the original jail's supervisor may still hold it).
 */
async function listenAsBefore(pid: number, outputPipes: boolean): Promise<Awaited<ReturnType<typeof selfCheckpoints>> | undefined> {
  const { addressIn } = await import('../jails/self-checkpoint.js');
  const address = addressIn(pid);
  if (!address) return undefined;
  try {
    const self = await selfCheckpoints(address);
    self.server.serveJail(pid, outputPipes);
    return self;
  } catch {
    process.stderr.write(`vjail: warning: checkpoint requests from inside the restored jail go to ${address}, still held by another supervisor (the original jail's?), which refuses them\n`);
    return undefined;
  }
}
