import { spawn, type StdioOptions } from 'node:child_process';
import { dataPath } from '../src/paths.js';

export interface Captured {
  stdout: string;
  stderr: string;
}

/** Run a program to completion; reject with its stderr unless it exits 0. */
export function capture(file: string, args: string[], opts: { env?: NodeJS.ProcessEnv; stdio?: StdioOptions } = {}): Promise<Captured> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe'], env: opts.env });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve({ stdout, stderr });
      else reject(new Error(`${[file, ...args].join(' ')}: ${signal ?? `exit ${code}`}: ${firstLine(stderr)}`));
    });
  });
}

export function firstLine(s: string): string {
  return s.trim().split('\n').find((l) => l.trim() !== '') ?? '';
}

/** The number after `key` in the output of a bench/c program. */
export function field(out: string, key: string): string {
  const m = new RegExp(`^${key} (.*)$`, 'm').exec(out);
  if (!m) throw new Error(`no "${key}" in output: ${firstLine(out)}`);
  return m[1]!;
}

export function numberField(out: string, key: string): number {
  const v = Number(field(out, key));
  if (!Number.isFinite(v)) throw new Error(`"${key}" is not a number in: ${firstLine(out)}`);
  return v;
}

/** The vjail CLI of this checkout. */
export const vjailCli = (): string => dataPath('bin', 'vjail.js');

/** Milliseconds of CPU time the supervisor's spinners used, from `vjail run --stats` (0 if they never spun). */
export function spinCpuMs(stats: string): number {
  const m = /^spinning CPUs kept awake for ([0-9.]+) ms of CPU time/m.exec(stats);
  if (m) return Number(m[1]);
  if (!/answered in C/.test(stats)) throw new Error(`no receiver line in the --stats output: ${stats.trim().split('\n')[0] ?? ''}`);
  return 0;
}
