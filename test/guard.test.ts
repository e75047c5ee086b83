import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { createJailCgroup, removeJailCgroup, type JailCgroup } from '../src/cgroup.js';
import { fixture, repoRoot } from './helpers/fixtures.js';
import { alive, waitFor } from './helpers/run.js';

// vjail-guard alone, against a process that plays vjail (test/fixtures/guard-fake.c): it
// holds a workload at one chosen moment of an injected call, with the guard's table saying
// so, and dies by SIGKILL. Whatever the moment, the workload goes on as if never held.

const guard = join(repoRoot, 'build', 'Release', 'vjail-guard');
const leftovers: { pid?: number; cg?: JailCgroup; dir: string }[] = [];

afterAll(() => {
  for (const l of leftovers) {
    if (l.pid && alive(l.pid)) process.kill(l.pid, 'SIGKILL');
    if (l.cg) removeJailCgroup(l.cg);
    rmSync(l.dir, { recursive: true, force: true });
  }
});

function counts(file: string): { work: number; unexpected: number; usr1: number } | undefined {
  const f = existsSync(file) ? readFileSync(file, 'utf8').trim().split(' ').map(Number) : [];
  if (f.length !== 3 || f.some((n) => !Number.isInteger(n))) return undefined;
  return { work: f[0]!, unexpected: f[1]!, usr1: f[2]! };
}

function sigBlk(pid: number): string | undefined {
  return /^SigBlk:\s+(\S+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
}

function tracer(pid: number): string | undefined {
  return /^TracerPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
}

describe('vjail-guard puts a held task back whatever moment vjail died at', () => {
  const moments: [string, string][] = [
    ['clean', 'held, nothing of vjail loaded'],
    ['own', "registers noted as vjail's but the task's own in place (died on either side of loading them)"],
    ['entry', "vjail's registers loaded, stopped at the entry of an injected call"],
    ['exit', "vjail's registers loaded, stopped at the exit of an injected call"],
    ['signal', "vjail's registers loaded, a signal held at its delivery stop"],
    ['released', "vjail's registers loaded and the task let go, as when the kernel skips a dying vjail's exit stop: it parks until the guard comes"],
    ['handler', "held inside a signal handler with every signal blocked and let go so: it returns from the handler, its own mask back, and the guard keeps that mask"],
  ];
  for (const [moment, what] of moments) {
    it(`${moment}: ${what}`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'vjail-guard-'));
      const cg = createJailCgroup(`guard-${moment}`, 'vjail-test');
      const left: (typeof leftovers)[number] = { cg, dir };
      leftovers.push(left);
      expect(cg, 'a freezer cgroup for the workload').toBeDefined();
      const status = join(dir, 'status');
      const r = await execa(fixture('guard-fake'), [guard, moment, status, `${cg!.kind}:${cg!.path}`], { reject: false, timeout: 30_000 });
      left.pid = Number(/workload (\d+)/.exec(r.stdout)?.[1]);
      expect(r.stdout, r.stderr).toMatch(/dying/);
      expect(r.signal).toBe('SIGKILL');
      expect(r.stderr).toMatch(/vjail-guard: vjail died during a checkpoint; 1 task\(s\) of the jail put back as they were and its cgroup thawed/);
      expect(r.stderr).not.toMatch(/cannot|could not|lost/);
      if (moment === 'released') expect(r.stdout).toMatch(/parked/);
      if (moment === 'handler') expect(r.stdout).toMatch(/ran on/);
      if (moment === 'signal') expect(r.stderr).toMatch(/signal 10 of task \d+, held by vjail when it died, delivered again with its own siginfo/);
      const pid = left.pid;
      expect(await waitFor(() => tracer(pid) === '0', 5000), 'let go').toBe(true);
      const before = counts(status)!;
      const moved = await waitFor(() => {
        const now = counts(status);
        return now !== undefined && now.work >= before.work + 5 && now.usr1 === (moment === 'signal' || moment === 'handler' ? 1 : 0);
      }, 10_000);
      expect(moved, `the workload goes on (was ${JSON.stringify(before)}, now ${JSON.stringify(counts(status))})`).toBe(true);
      // Its own mask, which blocks nothing outside its handler: no signal kept from it for good.
      expect(await waitFor(() => sigBlk(pid) === '0000000000000000', 5000), `its own signal mask (now ${sigBlk(pid)})`).toBe(true);
      expect(alive(pid)).toBe(true);
      expect(counts(status)!.unexpected, 'its stack and computation intact').toBe(0);
    }, 60_000);
  }
});
