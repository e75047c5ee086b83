/**
 * The monitor: one per container (and per detached exec), started by create
 * in a session of its own. It is the vjail supervisor of the container's
 * processes, and the pid engines are given: it exits with the container's
 * status, so an engine that reaps it (conmon, containerd's shim) learns it.
 */
import { closeSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Jail } from '../jail.js';
import { parseProcess } from './config.js';
import { type Globals, logLine } from './globals.js';
import { configUserNamespace, containerPlan, processLines, rootfsOf } from './plan-file.js';
import { setupPath } from './paths.js';
import { monitorPreserved } from './preserve-fds.js';
import { containerDir, readStored, type Stored, writeStored } from './state.js';
import { configPolicy, supervise } from './supervise.js';

const READY_FD = 3;

export async function containerMonitor(g: Globals, id: string, consoleSocket?: string, preserved = 0, restoreImage?: string): Promise<number> {
  const dir = containerDir(g.root, id);
  const s = readStored(g.root, id);
  const warn = (line: string) => logLine(g, 'warning', `${id}: ${line}`);
  if (restoreImage) return restoredMonitor(g, s, restoreImage, consoleSocket, warn);
  let jail;
  try {
    jail = supervise({
      config: s.config,
      process: s.config.process!,
      planFile: join(dir, 'setup'),
      plan: (kernelFiles) =>
        containerPlan({ config: s.config, bundle: s.bundle, fifo: join(dir, 'exec.fifo'), initPidFile: join(dir, 'init.pid'), consoleSocket, cgroups: s.cgroups, kernelFiles }),
      readyFd: READY_FD,
      preserveFds: monitorPreserved(preserved),
      warn,
    });
  } catch (e) {
    // Setup already told create why (or create sees the monitor end); the log keeps it too.
    logLine(g, 'error', `${id}: ${(e as Error).message}`);
    writeStored(g.root, { ...readStored(g.root, id), exitStatus: 127 });
    return 127;
  } finally {
    closeSync(READY_FD);
    for (const fd of monitorPreserved(preserved)) closeSync(fd);
  }
  return superviseToEnd(g, id, jail);
}

/** The container runs: record it (then tell `ready`), and its status once it has ended. */
async function superviseToEnd(g: Globals, id: string, jail: Jail, ready?: () => void): Promise<number> {
  writeStored(g.root, { ...readStored(g.root, id), started: true, workloadPid: jail.pid });
  ready?.();
  const exit = await jail.exited;
  writeStored(g.root, { ...readStored(g.root, id), exitStatus: exit.status });
  logLine(g, 'debug', `${id}: exited with status ${exit.status}`);
  return exit.status;
}

/**
 * Restore: vjail's restore (src/checkpoint/restore.ts) with the restorer
 * started through the container's setup, so the processes come back in the
 * container's namespaces, cgroups and root, under the config's policy.
 * `restore` hears "ok" on the ready fd once they run (setup's fd 4 is the
 * restorer's here).
 */
async function restoredMonitor(g: Globals, s: Stored, image: string, consoleSocket: string | undefined, warn: (line: string) => void): Promise<number> {
  const dir = containerDir(g.root, s.id);
  const { restore, restorerPath } = await import('../checkpoint/restore.js');
  const rootfs = rootfsOf(s.config, s.bundle);
  let jail;
  try {
    jail = await restore({
      image,
      stdio: ['inherit', 'inherit', 'inherit'],
      root: rootfs,
      configUserNamespace: configUserNamespace(s.config),
      policy: { given: { policy: configPolicy(s.config, s.config.process!), source: 'config.json linux.seccomp' } },
      warn,
      report: (step, detail) => logLine(g, 'debug', `${s.id}: restore ${step}: ${detail}`),
      launchVia: (kernelFiles, timeOffsets) => {
        const planFile = join(dir, 'setup');
        const plan = containerPlan({
          config: s.config, bundle: s.bundle, initPidFile: join(dir, 'init.pid'), consoleSocket, cgroups: s.cgroups, kernelFiles,
          restore: { restorer: restorerPath(), timeOffsets },
        });
        writeFileSync(planFile, plan, { mode: 0o600 });
        return [setupPath(), planFile];
      },
    });
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0];
    logLine(g, 'error', `${s.id}: restore: ${msg}`);
    writeSync(READY_FD, `error: cannot restore ${image}: ${msg}\n`);
    closeSync(READY_FD);
    writeStored(g.root, { ...readStored(g.root, s.id), exitStatus: 127 });
    return 127;
  }
  return superviseToEnd(g, s.id, jail, () => {
    writeSync(READY_FD, 'ok\n');
    closeSync(READY_FD);
  });
}

/** A detached exec's monitor: the job file holds the process and where the container's process is. */
export async function execMonitor(g: Globals, id: string, jobFile: string): Promise<number> {
  const job = JSON.parse(readFileSync(jobFile, 'utf8')) as { process: unknown; consoleSocket?: string; planFile: string; preserved?: number };
  const exit = await runExec(g, id, job.process, job.consoleSocket, job.planFile, READY_FD, monitorPreserved(job.preserved ?? 0));
  return exit;
}

/** Run one process in the container, supervised here; resolves to its status. */
export async function runExec(g: Globals, id: string, processJson: unknown, consoleSocket: string | undefined, planFile: string, readyFd: number, preserveFds: number[] = []): Promise<number> {
  const s = readStored(g.root, id);
  const p = parseProcess(processJson, 'exec process');
  let jail;
  try {
    jail = supervise({
      config: s.config,
      process: p,
      planFile,
      plan: () => {
        let text = `join\t${s.workloadPid}\n`;
        for (const c of s.cgroups) text += `cgroup\t${c.replace(/[%\t\n]/g, (ch) => `%${ch.charCodeAt(0).toString(16).padStart(2, '0')}`)}\n`;
        if (p.terminal && consoleSocket) text += `console\t${consoleSocket}\t${p.consoleSize?.height ?? 0}\t${p.consoleSize?.width ?? 0}\n`;
        return text + processLines(p, 'process');
      },
      readyFd,
      preserveFds,
      warn: (line) => logLine(g, 'warning', `${id}: exec: ${line}`),
    });
  } finally {
    closeSync(readyFd);
    for (const fd of preserveFds) closeSync(fd);
  }
  const exit = await jail.exited;
  writeFileSync(`${planFile}.status`, String(exit.status));
  return exit.status;
}
