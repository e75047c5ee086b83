import { resolve } from 'node:path';
import { checkpoint } from '../checkpoint/dump.js';
import { catchingSignals, ignoreSignalsUntilExit } from '../checkpoint/interrupt.js';
import { CheckpointError, CheckpointUnsupported, ExternalStateError } from '../checkpoint/errors.js';
import { TraceeError } from '../checkpoint/tracee.js';
import type { StoreMirror } from '../checkpoint/predump.js';
import { checkSignKey, ImageError, type Manifest } from '../image/format.js';
import { jailMembers } from '../jails/members.js';
import { listStates, liveness, requireState, workloadAlive } from '../jails/state.js';
import { isNativeError } from '../native.js';
import { UsageError, userMessage } from './errors.js';
import { ProgressLine, StepClock, stderrIsTTY } from './progress.js';
import { checkpointOutput, type Output } from './stream.js';

export interface CheckpointFlags {
  pid?: string;
  image: string;
  leaveRunning?: boolean;
  external?: 'fail' | 'warn' | 'terminate';
  grace?: string;
  /** No step lines and no progress line (warnings and errors still). */
  quiet?: boolean;
  /** Print the result as JSON on stdout. */
  json?: boolean;
  /** true: --verify-restorable (page files hashed too, whatever the size); false: --no-verify-restorable; default: auto. */
  verifyRestorable?: boolean;
  tcpEstablished?: boolean;
  signKey?: string;
  /** zstd or gzip: a packed image directory, or a compressed stream (src/cli/stream.ts). */
  compress?: string;
  /** A 32-byte key file: the image is encrypted with it (AES-256-GCM). */
  encryptKey?: string;
  preDump?: boolean;
  preDumpRounds?: string;
}

/** Errors of checkpoint, restore and inspect as one-line usage errors (exit 2). */
export function asUserError(e: unknown, what: string): unknown {
  if (e instanceof ImageError || e instanceof CheckpointError || e instanceof CheckpointUnsupported) return new UsageError(e.message);
  if (e instanceof TraceeError) return new UsageError(`${what} failed: ${e.message}`);
  if (isNativeError(e)) {
    const hint = e.code === 'EPERM' ? ' (ptrace needs the same user, or CAP_SYS_PTRACE)' : '';
    return new UsageError(`${what} failed: ${e.message}${hint}`);
  }
  return e;
}

/**
 * The process to checkpoint for a named jail, found by the jail's identity
 * (its cgroup or PID namespace, src/jails/members.ts), not by its first pid:
 * a daemonizing workload's first process has exited. With its own PID
 * namespace any process of it names the jail; without one the jail must be
 * down to a single process.
 */
function namedTarget(name: string): number {
  const s = requireState(name);
  const live = liveness(s);
  if (live !== 'running') throw new UsageError(`jail "${name}" is not running (${live}); only a running jail can be checkpointed`);
  const { pids } = jailMembers(s);
  if (pids.length === 0) throw new UsageError(`jail "${name}" has no live process left to checkpoint; its supervisor (pid ${s.supervisorPid}) is ending it`);
  if (s.pidNs) return workloadAlive(s) ? s.pid! : pids[0]!;
  if (pids.length > 1) {
    const shown = pids.slice(0, 8).join(', ') + (pids.length > 8 ? ', …' : '');
    throw new UsageError(`jail "${name}" has ${pids.length} processes (${shown}); without its own PID namespace only a jail of one process can be checkpointed: run it with "vjail run --pid-ns"`);
  }
  return pids[0]!;
}

/**
 * The pid to checkpoint and, for a named jail, what its state says of its
 * plan, and whether its output is its supervisor's (a detached jail's: the
 * log file, or with --log-max-size the pipe read into it).
 */
function target(name: string | undefined, flags: CheckpointFlags): { pid: number; jail?: { profile: string; policy: string | null; emulate: string[] }; detached?: boolean } {
  if (name !== undefined && flags.pid !== undefined) throw new UsageError('give a jail name or --pid, not both');
  if (name === undefined) {
    if (flags.pid === undefined) throw new UsageError('say which jail: vjail checkpoint NAME --image DIR, or --pid PID');
    const pid = Number(flags.pid);
    if (!Number.isInteger(pid) || pid <= 0) throw new UsageError(`--pid must be a process id, not "${flags.pid}"`);
    // The process a jail's name stands for, given by its pid: checkpointed as by the name (its plan, its output's pipe).
    const named = listStates().find((s) => liveness(s) === 'running' && s.pid === pid);
    return named ? { pid, jail: { profile: named.profile, policy: named.policy, emulate: named.emulate }, detached: named.detached } : { pid };
  }
  const pid = namedTarget(name);
  const s = requireState(name);
  return { pid, jail: { profile: s.profile, policy: s.policy, emulate: s.emulate }, detached: s.detached };
}

/** What `--json` prints of a checkpoint or restore's processes. */
export function processSummary(m: Manifest): { pid: number; comm: string; state: string; threads: number }[] {
  return m.processes.map((p) => ({ pid: p.pid, comm: p.comm, state: p.state, threads: p.state === 'live' ? p.threads.length : 0 }));
}

/** Bytes of page data in an image. */
export function pageBytes(m: Manifest): number {
  return m.processes.reduce((n, p) => n + (p.state === 'live' ? p.mappings.reduce((k, map) => k + (map.pages?.size ?? 0), 0) : 0), 0);
}

/** `vjail checkpoint NAME|--pid PID --image DIR [--leave-running] [--quiet] [--json]` */
export async function checkpointCommand(
  name: string | undefined,
  flags: CheckpointFlags,
  /**
   * For `vjail migrate`: where the image goes instead of --image, and the moment the jail is stopped.
   * `endsProcess`: vjail exits once this returns (`vjail checkpoint`): a signal after the checkpoint succeeded is ignored.
   */
  extra: { output?: Output; onStopping?: () => void; durable?: boolean; mirror?: StoreMirror; endsProcess?: boolean } = {},
): Promise<number> {
  const grace = flags.grace === undefined ? 5 : Number(flags.grace);
  if (!Number.isFinite(grace) || grace < 0 || grace > 3600) throw new UsageError(`--grace takes seconds from 0 to 3600, not "${flags.grace}"`);
  const rounds = flags.preDumpRounds === undefined ? undefined : Number(flags.preDumpRounds);
  if (rounds !== undefined && (!Number.isInteger(rounds) || rounds < 1 || rounds > 100)) throw new UsageError(`--pre-dump-rounds takes a whole number from 1 to 100, not "${flags.preDumpRounds}"`);
  if (rounds !== undefined && !flags.preDump) throw new UsageError('--pre-dump-rounds needs --pre-dump');
  const clock = new StepClock();
  const warnings: string[] = [];
  const progress = new ProgressLine('checkpoint', 'written', stderrIsTTY() && !flags.quiet);
  const say = (line: string): void => {
    progress.finish();
    process.stderr.write(`${line}\n`);
  };
  let manifest: Manifest;
  let pid: number | undefined;
  let output: Output | undefined;
  try {
    const out = (output = extra.output ?? checkpointOutput(flags));
    const t = target(name, flags);
    pid = t.pid;
    if (flags.signKey) checkSignKey(flags.signKey);
    // SIGINT/SIGTERM/SIGHUP stop the checkpoint at a safe point; the jail is let go as it was.
    manifest = await catchingSignals(async () => {
      const m = await checkpoint({
        pid: t.pid,
        jail: t.jail,
        image: out.plain,
        afterPublish: out.afterPublish,
        durable: extra.durable,
        leaveRunning: flags.leaveRunning,
        preDump: flags.preDump ? { rounds, mirror: extra.mirror } : false,
        external: flags.external,
        tcpEstablished: flags.tcpEstablished,
        outputPipes: t.detached,
        signKey: flags.signKey ? resolve(flags.signKey) : undefined,
        graceMs: grace * 1000,
        onStopping: extra.onStopping,
        report: (step, stepName, detail) => {
          clock.mark(stepName);
          if (!flags.quiet) say(`vjail: checkpoint ${step}/5 ${stepName}: ${detail}`);
        },
        warn: (line) => {
          warnings.push(line);
          say(`vjail: warning: ${line}`);
        },
        progress: (bytes) => progress.add(bytes),
        verify: flags.verifyRestorable === undefined ? 'auto' : flags.verifyRestorable ? 'full' : 'off',
      });
      if (extra.endsProcess) ignoreSignalsUntilExit();
      return m;
    });
  } catch (e) {
    progress.finish();
    const json = (error: string, extra: object = {}): void => {
      if (flags.json) process.stdout.write(`${JSON.stringify({ ok: false, image: resolve(flags.image), jail: name ?? null, pid: pid ?? null, error, ...extra, warnings })}\n`);
    };
    if (e instanceof ExternalStateError) {
      // The external-state report: one line saying what happened, then what, per process.
      json(`checkpoint refused: ${e.message}`, { external: e.lines });
      process.stderr.write(`vjail: checkpoint refused: ${e.message}\n${e.lines.map((l) => `vjail:   ${l}\n`).join('')}`);
      return 1;
    }
    const err = asUserError(e, 'checkpoint');
    json(userMessage(err) ?? (err instanceof Error ? err.message : String(err)));
    throw err;
  } finally {
    output?.cleanup();
  }
  progress.finish();
  if (flags.json) {
    const result = {
      ok: true,
      image: resolve(flags.image),
      jail: name ?? null,
      pid,
      leftRunning: !!flags.leaveRunning,
      pidNamespace: manifest.pidNamespace,
      processes: processSummary(manifest),
      bytes: pageBytes(manifest),
      timings: clock.timings(),
      warnings,
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  }
  return 0;
}
