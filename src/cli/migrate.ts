import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { performance } from 'node:perf_hooks';
import { dirSource, ImageError, removeTempImage, type StreamTotals, tempImageDir, validateWithoutCompiling } from '../image/format.js';
import { connectPageServer, sendAndAwaitRestored, servePageServer } from '../migrate/transfer.js';
import { RoundsSender } from '../migrate/rounds.js';
import { dirtyTrackingUnsupported } from '../checkpoint/predump.js';
import { LAUNCH_HINT_MAX, type LaunchHint, type RestoreReply } from '../migrate/protocol.js';
import { type JailState, liveness, requireState } from '../jails/state.js';
import { collectUserNamespace } from '../checkpoint/parts/userns.js';
import { checkpointCommand } from './checkpoint.js';
import { UsageError } from './errors.js';
import { compressionOf, keyOf } from './stream.js';
import { timingsOn } from '../timings.js';

interface MigrateFlags {
  pskFile?: string;
  as?: string;
  compress?: string;
  quiet?: boolean;
  json?: boolean;
  tcpEstablished?: boolean;
  signKey?: string;
  /**
   * Default true (--no-pre-dump): copy memory while the jail runs and send
   * it to the receiver then, round after round; only what was written since
   * is sent once the jail is stopped. Where writes cannot be tracked, all
   * of it is sent while stopped (and said).
   */
  preDump?: boolean;
  preDumpRounds?: string;
  /** Default true; --no-lazy has the receiver load every page before the jail runs there. */
  lazy?: boolean;
}

/** HOST:PORT, [V6]:PORT. */
function hostPort(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(s);
  const port = Number(m?.[3]);
  if (!m || !Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`say where to migrate to as HOST:PORT (the page server's), not "${s}"`);
  return { host: (m[1] ?? m[2])!, port };
}

function pskOf(file: string | undefined): Buffer {
  if (file === undefined) throw new UsageError('--psk-file FILE is required: the 32-byte key both sides hold (make one with: head -c 32 /dev/urandom > FILE)');
  return keyOf(file, '--psk-file')!;
}

/**
 * How the jail runs here, for the receiver to start its restorer while the
 * jail still runs (it checks this guess against the image). None where it
 * cannot be read: the receiver then starts the restorer once the image is there.
 */
function launchHintOf(s: JailState): LaunchHint | undefined {
  if (s.pid === null) return undefined;
  try {
    const hint: LaunchHint = { profile: s.profile, emulate: s.emulate, pidNamespace: s.pidNs, userNamespace: collectUserNamespace(s.pid), policy: s.policy !== null };
    return JSON.stringify(hint).length <= LAUNCH_HINT_MAX ? hint : undefined;
  } catch {
    return undefined; // the checkpoint says why, if it is why the jail cannot move
  }
}

/**
 * `vjail migrate NAME HOST:PORT --psk-file FILE`: handshake with the page
 * server first (a wrong key or no server leaves the jail untouched), then
 * checkpoint the jail; with every task still held, send the image and wait
 * for the receiver to restore it. Only then is the jail killed here; if the
 * receiver fails, the jail runs on here.
 */
async function migrateCommand(name: string, to: string, flags: MigrateFlags): Promise<number> {
  const { host, port } = hostPort(to);
  const psk = pskOf(flags.pskFile);
  const compress = compressionOf(flags.compress);
  const as = flags.as ?? name;
  // A jail that is not there, or not running, is said before any connection is made.
  const state = requireState(name);
  const live = liveness(state);
  if (live !== 'running') throw new UsageError(`jail "${name}" is not running (${live}); only a running jail can be migrated`);
  const t0 = performance.now();
  // Streamed pre-dump rounds need the kernel to track writes; without, every page is sent while stopped.
  let preDump = flags.preDump !== false;
  if (flags.preDumpRounds !== undefined && !preDump) throw new UsageError('--pre-dump-rounds needs the pre-dump (leave out --no-pre-dump)');
  const untracked = preDump ? dirtyTrackingUnsupported() : null;
  if (untracked) {
    process.stderr.write(`vjail: warning: migrate: writes cannot be tracked here (${untracked}): all of the jail's memory is sent while it is stopped\n`);
    preDump = false;
  }
  let conn;
  try {
    conn = await connectPageServer(host, port, psk, { name: as, lazy: flags.lazy !== false, launch: launchHintOf(state) });
  } catch (e) {
    if (e instanceof ImageError) throw new UsageError(`migrate: ${e.message}; the jail was left as it was`);
    throw e;
  }
  const connectedAt = performance.now();
  const plain = tempImageDir('migrate');
  let stoppedAt: number | undefined;
  let publishedAt: number | undefined;
  let sentAt: number | undefined;
  let restoredAt: number | undefined;
  let totals: StreamTotals | undefined;
  let reply: RestoreReply | undefined;
  let code: number;
  // The pre-dump's copies go to the receiver as they are made, while the jail runs.
  const rounds = preDump ? new RoundsSender(conn, compress) : undefined;
  try {
    // The receiver checks what it restores; with the pre-dump streamed the page files here are not written (rounds.ts).
    const verifyRestorable = rounds ? false : undefined;
    code = await checkpointCommand(name, { image: plain, quiet: flags.quiet, tcpEstablished: flags.tcpEstablished, signKey: flags.signKey, preDump, preDumpRounds: preDump ? flags.preDumpRounds : undefined, verifyRestorable }, {
      mirror: rounds,
      output: {
        plain,
        afterPublish: async (dir, manifest) => {
          try {
            publishedAt = performance.now();
            ({ totals, sentAt, reply } = rounds ? await rounds.finish(dir, manifest) : await sendAndAwaitRestored(conn, dirSource(dir, manifest), { compress }));
          } catch (e) {
            if (e instanceof ImageError) throw new ImageError(`migrate: ${e.message}; the jail runs on here`);
            throw e;
          }
          if (!reply.ok) throw new ImageError(`the page server at ${conn.peer} could not restore the jail (${reply.error}); the jail runs on here`);
          restoredAt = performance.now();
        },
        cleanup: () => removeTempImage(plain),
      },
      // The image is temporary: sent, then removed. Syncing it to disk would only lengthen the stop.
      durable: false,
      // From the freeze on: the pre-dump's rounds and what follows them until then run beside the jail.
      onStopping: () => void (stoppedAt = performance.now()),
    });
  } finally {
    conn.sock.destroy();
  }
  if (code !== 0) return code;
  const ms = (a: number | undefined, b: number | undefined): number | null => (a !== undefined && b !== undefined ? Math.round((b - a) * 100) / 100 : null);
  // The jail ran there this long before the receiver answered: the stop ended then, not at the answer.
  const ranThereMs = reply?.phases?.ranMs;
  const runsThereAt = restoredAt !== undefined ? restoredAt - (ranThereMs ?? 0) : undefined;
  /**
   * Where the time went: connecting (handshake), copying while the jail
   * runs (pre-dump), then stopped: the dump until the image is published,
   * sending it, and the receiver's restore until the jail runs there (of
   * which its own receiving and restoring, as it measured them); then the
   * receiver's answer, sent that long after the jail ran there (null from a
   * receiver that cannot tell: the stop then counts until its answer).
   */
  const phases = {
    connectMs: ms(t0, connectedAt),
    runningMs: ms(connectedAt, stoppedAt),
    dumpMs: ms(stoppedAt, publishedAt),
    sendMs: ms(publishedAt, sentAt),
    restoreWaitMs: ms(sentAt, runsThereAt),
    receiverReceiveMs: reply?.phases ? Math.round(reply.phases.receiveMs * 100) / 100 : null,
    receiverRestoreMs: reply?.phases ? Math.round(reply.phases.restoreMs * 100) / 100 : null,
    answerMs: ranThereMs !== undefined ? Math.round(ranThereMs * 100) / 100 : null,
  };
  if (timingsOn()) for (const [k, v] of Object.entries(phases)) if (v !== null) process.stderr.write(`vjail timing: migrate ${k.replace(/Ms$/, '')} ${v.toFixed(2)} ms\n`);
  const result = {
    ok: true,
    jail: name,
    to: conn.peer,
    as,
    pid: reply?.pid ?? null,
    stoppedMs: stoppedAt !== undefined && runsThereAt !== undefined ? runsThereAt - stoppedAt : null,
    totalMs: performance.now() - t0,
    bytes: totals?.bytes ?? 0,
    /** With the pre-dump streamed: bytes of memory sent while the jail ran, and once it was stopped. */
    memorySentRunning: rounds?.runningBytes ?? null,
    memorySentStopped: rounds?.stoppedBytes ?? null,
    streamBytes: totals?.streamBytes ?? 0,
    compress: totals?.compress ?? 'none',
    preDump,
    lazy: flags.lazy !== false,
    phases,
  };
  if (flags.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else if (!flags.quiet) {
    process.stderr.write(`vjail: migrated "${name}" to ${conn.peer} as "${as}" (pid ${result.pid} there): stopped ${result.stoppedMs?.toFixed(0)} ms, ${result.totalMs.toFixed(0)} ms in all, ${(result.streamBytes / 2 ** 20).toFixed(1)} MiB sent\n`);
  }
  return 0;
}

/** `vjail page-server --port P --psk-file FILE`: receive migrated jails and restore them, each as a named detached jail. */
interface PageServerFlags {
  port?: string;
  host: string;
  pskFile?: string;
  once?: boolean;
  policy?: string;
  verifyKey?: string;
  trustImage?: boolean;
}

async function pageServerCommand(flags: PageServerFlags): Promise<number> {
  const port = Number(flags.port);
  if (flags.port === undefined || !Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port takes a TCP port (0 for any free one), not "${flags.port ?? ''}"`);
  const psk = pskOf(flags.pskFile);
  const log = (line: string): void => void process.stderr.write(`vjail: page-server: ${line}\n`);
  // An image is authenticated by a signature, not by the pre-shared key: one signed on another machine needs one of these.
  const restoreArgs = [
    ...(flags.policy ? ['--policy', resolve(flags.policy)] : []),
    ...(flags.verifyKey ? ['--verify-key', resolve(flags.verifyKey)] : []),
    ...(flags.trustImage ? ['--trust-image'] : []),
  ];
  let served;
  try {
    served = await servePageServer({ host: flags.host, port, psk, once: flags.once, log, restoreArgs });
  } catch (e) {
    if (e instanceof ImageError) throw new UsageError(e.message);
    throw e;
  }
  log(`listening on ${flags.host}:${served.port}`);
  const stop = (): void => void served.server.close();
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  await served.done;
  return 0;
}

export function registerMigrateCommands(cli: Command, setExit: (code: number) => void): void {
  validateWithoutCompiling();
  cli
    .command('migrate')
    .description('move a named jail to the page server at HOST:PORT: checkpoint, send, restore there, then end it here')
    .argument('<name>', 'a named jail (see "vjail ps")')
    .argument('<to>', 'HOST:PORT of a "vjail page-server"')
    .option('--psk-file <file>', 'the 32-byte pre-shared key the page server holds')
    .option('--as <name>', 'the name the jail gets there (default: its name here)')
    .addOption(new Option('--compress <how>', 'compress the image on its way').choices(['zstd', 'gzip']))
    .option('--tcp-established', 'save established TCP connections (see "vjail checkpoint")')
    .option('--pre-dump', 'the default, where the kernel can track writes (see --no-pre-dump)')
    .option('--no-pre-dump', 'send all of the jail\'s memory once it is stopped (default: send it while it runs, round after round, then only what it wrote since, where the kernel can track writes)')
    .option('--pre-dump-rounds <n>', 'rounds of copying what was written, after the first copy (default 8; fewer when one finds little)')
    .option('--no-lazy', 'have the receiver load every page before the jail runs there (default: it runs at once, its pages placed on fault)')
    .option('--sign-key <file>', 'also sign the image with this key, for a page server started with --verify-key (see "vjail checkpoint")')
    .option('-q, --quiet', 'no step lines and no progress line (warnings and errors still)')
    .option('--json', 'print the result on stdout as JSON: where, pid there, stopped and total ms, bytes')
    .action(async (name: string, to: string, flags: MigrateFlags) => setExit(await migrateCommand(name, to, flags)));
  cli
    .command('page-server')
    .description('receive jails sent by "vjail migrate" and restore each as a named jail in the background')
    .option('--port <port>', 'TCP port to listen on (0: any free one, printed)')
    .option('--host <addr>', 'address to listen on', '0.0.0.0')
    .option('--psk-file <file>', 'the 32-byte pre-shared key senders must hold')
    .option('--once', 'serve one migration (whether it succeeds or not), then exit')
    .option('--policy <file>', 'restore received jails under this OCI seccomp policy, not the one each image names')
    .option('--verify-key <file>', 'restore only images signed with this key (checkpoint --sign-key on the sending machine)')
    .option('--trust-image', 'restore images no key of yours vouches for under the policy each names itself')
    .action(async (flags: PageServerFlags) => setExit(await pageServerCommand(flags)));
}
