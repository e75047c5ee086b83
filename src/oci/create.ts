/** `create`: set the container up to the point where only `start` is missing. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadConfig } from './config.js';
import { createCgroups, removeCgroups } from './cgroups.js';
import { OciError } from './errors.js';
import { globalArgs, logLine, type Globals } from './globals.js';
import { runHooks } from './hooks.js';
import { preservedCount, preservedStdio } from './preserve-fds.js';
import { binPath } from './paths.js';
import { checkNamespaces } from './plan-file.js';
import { containerDir, ociState, readStored, writeStored } from './state.js';

export interface CreateFlags {
  bundle?: string;
  pidFile?: string;
  consoleSocket?: string;
  preserveFds?: string;
  noPivot?: boolean;
  noNewKeyring?: boolean;
}

/** How long create waits for the setup to report: namespaces and mounts take milliseconds. */
const READY_BOUND_MS = 60_000;

/** Wait for setup's "ok" or "error: ..." on the monitor's fd 3. */
export function awaitReady(child: ChildProcess): Promise<string | undefined> {
  return new Promise((resolveReady) => {
    const sock = child.stdio[3] as NodeJS.ReadableStream & { destroy(): void };
    let text = '';
    const done = (err: string | undefined) => {
      clearTimeout(timer);
      sock.removeAllListeners();
      sock.destroy();
      resolveReady(err);
    };
    const timer = setTimeout(() => done(`the container's setup did not report within ${READY_BOUND_MS / 1000} s`), READY_BOUND_MS);
    sock.on('data', (d: Buffer) => {
      text += d.toString();
      const m = /^error: (.*)$/m.exec(text);
      if (m) done(m[1]);
      else if (/^ok$/m.test(text)) done(undefined);
    });
    sock.on('error', () => {});
    sock.on('close', () => done(text.trim() || 'the container\'s monitor ended before the container was set up (see --log)'));
  });
}

/** Create the container; with `restoreImage`, its processes are that vjail image's, running once this returns (restore.ts). */
export async function create(g: Globals, id: string, f: CreateFlags, restoreImage?: string): Promise<ChildProcess> {
  const dir = containerDir(g.root, id);
  if (existsSync(dir)) throw new OciError(`container "${id}" already exists; delete it first or pick another id`);
  const preserved = preservedCount(f.preserveFds);
  const bundle = resolve(f.bundle ?? '.');
  const config = loadConfig(bundle);
  checkNamespaces(config);
  mkdirSync(dir, { recursive: true, mode: 0o711 });
  let cg;
  try {
    cg = createCgroups(config, id);
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  writeStored(g.root, {
    id,
    bundle,
    pid: 0,
    monitorPid: 0,
    created: new Date().toISOString(),
    cgroups: cg.dirs,
    freezer: cg.freezer,
    annotations: config.annotations ?? {},
    config,
  });
  const args = [binPath(), ...globalArgs(g), '_monitor', id];
  if (f.consoleSocket) args.push('--console-socket', resolve(f.consoleSocket));
  if (preserved) args.push('--preserve-fds', String(preserved));
  if (restoreImage) args.push('--restore', restoreImage);
  const child = spawn(process.execPath, args, { detached: true, stdio: ['inherit', 'inherit', 'inherit', 'pipe', ...preservedStdio(preserved)] });
  const failed = await awaitReady(child);
  if (failed) {
    child.kill('SIGKILL');
    removeCgroups(cg.dirs);
    rmSync(dir, { recursive: true, force: true });
    throw new OciError(failed);
  }
  const pid = Number(readFileSync(join(dir, 'init.pid'), 'utf8'));
  const s = { ...readStored(g.root, id), pid, monitorPid: child.pid! };
  writeStored(g.root, s);
  if (f.pidFile) writeFileSync(resolve(f.pidFile), String(pid));
  logLine(g, 'debug', `${id}: created, pid ${pid}, monitor pid ${child.pid}`);
  try {
    for (const kind of ['prestart', 'createRuntime', 'createContainer'] as const) runHooks(config, kind, ociState(s));
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  child.unref();
  return child;
}
