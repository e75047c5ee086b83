/**
 * Starting the restorer: a jail whose workload is native/restorer, which
 * only waits to be driven (restore.ts). A migration's receiver may start one
 * before the image is there (`prelaunchRestorer`), from what the sender
 * said of the jail at the handshake; the restore takes it only if it was
 * started exactly as the image's manifest asks now (`sameLaunch`), and
 * otherwise ends it and starts another. Nothing of the image runs in it
 * before then: it holds the restorer alone.
 */
import { closeSync, existsSync, readlinkSync } from 'node:fs';
import { native } from '../native.js';
import { type Jail, type JailOptions, spawnJail } from '../jail.js';
import type { Policy } from '../policy/types.js';
import type { UserNsLayout } from '../userns.js';
import { dataPath } from '../paths.js';
import { answeredByJavaScript } from '../supervisor/answer-table.js';
import { PAGE_SIZE } from '../image/format.js';
import { ptraceAddon } from '../native/ptrace.js';
import { Tracee } from './tracee.js';
import { SYS } from './syscalls.js';
import type { Scratch } from './parts/memory.js';

/** How long the jail's first process may take to exec the restorer once launched. */
const EXEC_BOUND_MS = 30_000;
/** How long a restorer started in advance and not taken may take to end, with its jail. */
const DISCARD_BOUND_MS = 10_000;

export function restorerPath(): string {
  return dataPath('build', 'Release', 'vjail-restorer');
}

/** Everything a restorer's jail is started with (spawnJail's options) that an image decides. */
export interface RestorerLaunch {
  profile: string;
  policy: string | Policy | undefined;
  emulate: string[];
  pidNs: boolean;
  userNs: UserNsLayout | undefined;
  cgroup: string | undefined;
  timeOffsets: JailOptions['timeOffsets'];
  stdio: JailOptions['stdio'];
}

/** A restorer's jail, running the restorer, and our end of the socket its descriptors come over. */
export interface LaunchedRestorer {
  jail: Jail;
  sock: number;
  /** Seized already (one started before the image came). */
  seized?: SeizedRestorer;
}

/** The restorer attached (ptrace), with a scratch page mapped in it for the calls run there. */
export interface SeizedRestorer {
  root: Tracee;
  scratch: Scratch;
}

const PTRACE_O_TRACESYSGOOD = 0x1;
const PTRACE_O_TRACEFORK = 0x2;
const PTRACE_O_TRACECLONE = 0x8;
const PTRACE_O_EXITKILL = 0x100000;
/** Every task we create is attached to us, and killed if we die before letting it go. */
const FOLLOW = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEFORK | PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL;
const MAP_PRIVATE = 0x02;
const MAP_ANONYMOUS = 0x20;

/**
 * This process is the restored jail's supervisor: an injected call whose
 * answer may be JavaScript's needs the event loop free, so its stops are
 * waited for there. The others (most: mmap, close, prctl...) are waited for
 * in C, but only while the native thread receives the jail's notifications
 * (the loop moves that job only from its own callbacks, which do not run
 * meanwhile) and answers without JavaScript.
 */
function waitsWithoutJavaScript(jail: Jail): (nr: number) => boolean {
  const js = answeredByJavaScript(jail.plan, 'x86_64');
  if (js.has(-1)) return () => false;
  // (A restore's jail is never traced: tracing would have every answer given from JavaScript.)
  return (nr) => !js.has(nr) && jail.receiverState()?.receiver === 'thread';
}

/**
 * Wait until the jail runs the restorer, attach to it (its tasks to come
 * too), and map a scratch page in it. The tracee goes into `held` as soon
 * as it is attached, for the caller to kill on a failure.
 */
export async function seizeRestorer(jail: Jail, held: Tracee[]): Promise<SeizedRestorer> {
  await untilRestorerRuns(jail);
  const root = await Tracee.seize(jail.pid, { killOnExit: true });
  held.push(root);
  root.waitNativelyWhen(waitsWithoutJavaScript(jail));
  ptraceAddon().ptraceSetOptions(root.pid, FOLLOW);
  const scratch = { addr: await root.syscallOk('mmap of a scratch page', SYS.mmap, 0, PAGE_SIZE, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), size: PAGE_SIZE };
  return { root, scratch };
}

/**
 * Start the restorer's jail; the restorer receives the image's descriptors
 * over a socket pair (parts/fds/transfer.ts), whose other end it holds.
 * In a user namespace the restorer keeps its capabilities there whatever
 * its UID: it chooses PIDs.
 */
export function spawnRestorer(l: RestorerLaunch, warn: (line: string) => void, launchVia?: JailOptions['launchVia']): LaunchedRestorer {
  const [sock, theirs] = native().socketpair();
  try {
    const { profile, policy, emulate, stdio } = l;
    const jail = launchVia
      ? spawnJail({ command: [restorerPath()], profile, policy, emulate, stdio, warn, passFd: theirs, launchVia })
      : spawnJail({ command: [restorerPath()], profile, policy, emulate, pidNs: l.pidNs, userNs: l.userNs, ambientCaps: true, stdio, cgroup: l.cgroup, timeOffsets: l.timeOffsets, warn, passFd: theirs });
    return { jail, sock };
  } catch (e) {
    closeSync(sock);
    throw e;
  } finally {
    closeSync(theirs);
  }
}

function exeOf(pid: number): string | null {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return null;
  }
}

/** Wait (bounded) until the jail's first process runs the restorer: it execs it right after the launch handshake. */
async function untilRestorerRuns(jail: Jail): Promise<void> {
  const restorer = restorerPath();
  const deadline = Date.now() + EXEC_BOUND_MS;
  for (let exe = exeOf(jail.pid); exe !== restorer; exe = exeOf(jail.pid)) {
    if (exe === null && !existsSync(`/proc/${jail.pid}/stat`)) {
      const how = await Promise.race([jail.exited, new Promise<null>((r) => setTimeout(() => r(null), 2000))]);
      throw new Error(`the restorer ended before it could be attached${how ? ` (${how.execError ? `its exec failed: ${how.execError}` : `exit status ${how.status}`})` : ''}`);
    }
    if (Date.now() > deadline) throw new Error(`the restorer was not running ${EXEC_BOUND_MS / 1000} s after the launch (process ${jail.pid} runs ${exe ?? 'an unreadable program'})`);
    await new Promise((r) => setImmediate(r));
  }
}

/**
 * Whether two launches start the same jail. A policy counts as the same
 * only as the same file name (or none): one parsed from an image is
 * never taken for another.
 */
export function sameLaunch(a: RestorerLaunch, b: RestorerLaunch): boolean {
  const json = (v: unknown): string => JSON.stringify(v ?? null, (_, x: unknown) => (typeof x === 'bigint' ? x.toString() : x));
  return (
    a.profile === b.profile &&
    (a.policy === undefined || typeof a.policy === 'string') &&
    a.policy === b.policy &&
    json(a.emulate) === json(b.emulate) &&
    a.pidNs === b.pidNs &&
    json(a.userNs) === json(b.userNs) &&
    a.cgroup === b.cgroup &&
    a.timeOffsets === undefined &&
    b.timeOffsets === undefined &&
    json(a.stdio) === json(b.stdio)
  );
}

/** A restorer started before its image is there: the restore takes it, or it is ended. */
export interface PrelaunchedRestorer {
  /**
   * The restorer, if it was started as `want` asks and runs; otherwise it
   * is ended (its jail gone, waited for) and undefined: start another. Its
   * warnings are told to `warn` when taken. Once only.
   */
  take(want: RestorerLaunch, warn: (line: string) => void): Promise<LaunchedRestorer | undefined>;
  /** No image comes (or it was not taken): end it and wait, bounded, until its jail is gone. */
  discard(): Promise<void>;
}

/**
 * Start a restorer as `l` says, before the image is there. A failure is
 * kept, not thrown: the restore then starts its own and says what fails.
 */
export function prelaunchRestorer(l: RestorerLaunch): PrelaunchedRestorer {
  const warnings: string[] = [];
  let launched: LaunchedRestorer | undefined;
  let running: Promise<boolean>;
  // Attached to (if it got that far): ours to reap before its jail can end.
  const attached: Tracee[] = [];
  try {
    const it = (launched = spawnRestorer(l, (line) => warnings.push(line)));
    running = seizeRestorer(it.jail, attached).then(
      (seized) => ((it.seized = seized), true),
      () => false,
    );
  } catch {
    running = Promise.resolve(false);
  }
  let done = false;
  const discard = async (): Promise<void> => {
    done = true;
    const it = launched;
    launched = undefined;
    if (!it) return;
    closeSync(it.sock);
    // Traced, it is ours to reap first; then its jail ends.
    await running;
    for (const t of attached) await t.kill();
    it.jail.kill('SIGKILL');
    // Gone before another jail joins its cgroup: its end empties the cgroup of whatever is in it.
    let timer: NodeJS.Timeout | undefined;
    const ended = await Promise.race([it.jail.exited.then(() => true), new Promise<false>((r) => (timer = setTimeout(r, DISCARD_BOUND_MS, false)))]);
    clearTimeout(timer);
    if (!ended) throw new Error(`the restorer started before the image came (process ${it.jail.pid}) did not end within ${DISCARD_BOUND_MS / 1000} s of SIGKILL`);
  };
  return {
    take: async (want, warn) => {
      if (done) return undefined;
      if (launched && sameLaunch(l, want) && (await running)) {
        const it = launched;
        launched = undefined;
        done = true;
        for (const w of warnings) warn(w);
        return it;
      }
      await discard();
      return undefined;
    },
    discard,
  };
}
