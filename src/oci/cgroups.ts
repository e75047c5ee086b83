/**
 * The container's cgroups: one directory per mounted hierarchy at the
 * config's cgroupsPath (v1 controllers and the v2 tree of a hybrid host
 * alike), with the memory, pids and cpu limits written where a hierarchy
 * has that controller, and the freezer pause/resume uses.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { OciConfig } from './config.js';
import { OciError } from './errors.js';
import { sleepSync } from '../sleep-sync.js';

interface Hierarchy {
  mount: string;
  v2: boolean;
  controllers: string[];
}

function hierarchies(): Hierarchy[] {
  const out: Hierarchy[] = [];
  for (const l of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const [, at, type, opts] = l.split(' ');
    if (type === 'cgroup2') {
      const ctl = existsSync(join(at!, 'cgroup.controllers')) ? readFileSync(join(at!, 'cgroup.controllers'), 'utf8').trim().split(/\s+/).filter(Boolean) : [];
      out.push({ mount: at!, v2: true, controllers: ctl });
    } else if (type === 'cgroup') {
      const ctl = opts!.split(',').filter((o) => ['memory', 'pids', 'cpu', 'freezer', 'cpuacct', 'devices', 'blkio'].includes(o));
      if (ctl.length) out.push({ mount: at!, v2: false, controllers: ctl });
    }
  }
  return out;
}

/** cgroupsPath as a path: "slice:prefix:name" (systemd's form) becomes slice/prefix-name.scope. */
export function cgroupRelPath(config: OciConfig, id: string): string {
  const p = config.linux?.cgroupsPath;
  if (!p) return `/vjail-oci/${id}`;
  const parts = p.split(':');
  if (parts.length === 3 && !p.startsWith('/')) return `/${parts[0]}/${parts[1]}-${parts[2]}.scope`;
  return p.startsWith('/') ? p : `/${p}`;
}

function set(dir: string, file: string, value: string | number): void {
  try {
    writeFileSync(join(dir, file), String(value));
  } catch (e) {
    throw new OciError(`cannot set ${file} in ${dir}: ${(e as Error).message}; remove that limit from the config`);
  }
}

export interface Cgroups {
  dirs: string[];
  freezer?: { kind: 'v1' | 'v2'; path: string };
}

/** Make the container's cgroups and apply its limits. */
export function createCgroups(config: OciConfig, id: string): Cgroups {
  const rel = cgroupRelPath(config, id);
  const r = config.linux?.resources ?? {};
  const dirs: string[] = [];
  let freezer: Cgroups['freezer'];
  for (const h of hierarchies()) {
    const dir = join(h.mount, rel);
    try {
      mkdirSync(dir, { recursive: true });
    } catch {
      continue; // a read-only or foreign hierarchy: the container runs without it
    }
    dirs.push(dir);
    const has = (c: string) => h.controllers.includes(c);
    if (h.v2) {
      if (r.memory?.limit !== undefined && has('memory')) set(dir, 'memory.max', r.memory.limit < 0 ? 'max' : r.memory.limit);
      if (r.pids && has('pids')) set(dir, 'pids.max', r.pids.limit <= 0 ? 'max' : r.pids.limit);
      if (r.cpu?.quota !== undefined && has('cpu')) set(dir, 'cpu.max', `${r.cpu.quota < 0 ? 'max' : r.cpu.quota} ${r.cpu.period ?? 100000}`);
      if (existsSync(join(dir, 'cgroup.freeze'))) freezer ??= { kind: 'v2', path: dir };
    } else {
      if (r.memory?.limit !== undefined && has('memory')) set(dir, 'memory.limit_in_bytes', r.memory.limit);
      if (r.pids && has('pids')) set(dir, 'pids.max', r.pids.limit <= 0 ? 'max' : r.pids.limit);
      if (r.cpu?.shares && has('cpu')) set(dir, 'cpu.shares', r.cpu.shares);
      if (r.cpu?.quota !== undefined && has('cpu')) {
        if (r.cpu.period) set(dir, 'cpu.cfs_period_us', r.cpu.period);
        set(dir, 'cpu.cfs_quota_us', r.cpu.quota);
      }
      if (has('freezer')) freezer = freezer?.kind === 'v2' ? freezer : { kind: 'v1', path: dir };
    }
  }
  return { dirs, freezer };
}

export function removeCgroups(dirs: string[]): void {
  for (const d of dirs) {
    try {
      rmdirSync(d);
    } catch {
      // still in use by an engine's own process, or already gone
    }
  }
}

export function cgroupProcs(dirs: string[]): number[] {
  for (const d of dirs) {
    try {
      return readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
    } catch {
      // next hierarchy
    }
  }
  return [];
}

export function setFrozen(f: NonNullable<Cgroups['freezer']>, frozen: boolean): void {
  if (f.kind === 'v2') writeFileSync(join(f.path, 'cgroup.freeze'), frozen ? '1' : '0');
  else writeFileSync(join(f.path, 'freezer.state'), frozen ? 'FROZEN' : 'THAWED');
  // Bounded wait for the freezer to settle (v1 reports FREEZING meanwhile).
  const deadline = Date.now() + 5000;
  for (;;) {
    const now = f.kind === 'v2' ? readFileSync(join(f.path, 'cgroup.events'), 'utf8').includes(`frozen ${frozen ? 1 : 0}`) : readFileSync(join(f.path, 'freezer.state'), 'utf8').trim() === (frozen ? 'FROZEN' : 'THAWED');
    if (now) return;
    if (Date.now() > deadline) throw new OciError(`the freezer of ${f.path} did not become ${frozen ? 'frozen' : 'thawed'} within 5 s`);
    sleepSync(10);
  }
}
