/** `exec ID`: run another process in a running container, under its own supervisor. */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { awaitReady } from './create.js';
import { OciError } from './errors.js';
import { globalArgs, type Globals } from './globals.js';
import { binPath } from './paths.js';
import { preservedCount, preservedStdio } from './preserve-fds.js';
import { containerDir, readStored, statusOf } from './state.js';

export interface ExecFlags {
  process?: string;
  tty?: boolean;
  detach?: boolean;
  pidFile?: string;
  consoleSocket?: string;
  cwd?: string;
  env?: string[];
  user?: string;
  preserveFds?: string;
}

export async function exec(g: Globals, id: string, command: string[], f: ExecFlags): Promise<number> {
  const s = readStored(g.root, id);
  const status = statusOf(s);
  if (status !== 'running') throw new OciError(`cannot exec in container "${id}": it is ${status}, not running`);
  const preserved = preservedCount(f.preserveFds);
  let proc: unknown;
  if (f.process) {
    try {
      proc = JSON.parse(readFileSync(resolve(f.process), 'utf8'));
    } catch (e) {
      throw new OciError(`cannot read the process file ${f.process}: ${(e as Error).message}`);
    }
  } else {
    if (!command.length) throw new OciError('exec needs --process FILE or a command after the container id');
    const base = s.config.process!;
    const [uid, gid] = (f.user ?? '').split(':');
    proc = {
      ...base,
      args: command,
      terminal: !!f.tty,
      cwd: f.cwd ?? base.cwd,
      env: [...(base.env ?? []), ...(f.env ?? [])],
      user: f.user ? { uid: Number(uid), gid: Number(gid ?? 0) } : base.user,
    };
  }
  const planFile = join(containerDir(g.root, id), `exec-${randomBytes(6).toString('hex')}`);
  const jobFile = `${planFile}.job`;
  writeFileSync(jobFile, JSON.stringify({ process: proc, consoleSocket: f.consoleSocket && resolve(f.consoleSocket), planFile, preserved }));
  const child = spawn(process.execPath, [binPath(), ...globalArgs(g), '_exec-monitor', id, jobFile], {
    detached: !!f.detach,
    stdio: ['inherit', 'inherit', 'inherit', 'pipe', ...preservedStdio(preserved)],
  });
  const exited = new Promise<number>((r) => child.on('exit', (code, sig) => r(code ?? 128 + (sig === 'SIGKILL' ? 9 : 15))));
  const failed = await awaitReady(child);
  if (failed) {
    child.kill('SIGKILL');
    throw new OciError(failed);
  }
  if (f.pidFile) writeFileSync(resolve(f.pidFile), String(child.pid));
  if (f.detach) {
    child.unref();
    return 0;
  }
  return exited;
}
