/*
 * Steps shared by the cross-kernel tests: one shell script of functions runs
 * on the host and in each guest (src/vm), and readers for what the workload
 * (test/fixtures/xk-workload.c) and the steps left in the shared directory.
 */
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { expect } from 'vitest';
import { runInKernel, type KernelName } from '../../src/vm/index.js';
import { fixture, vjailBin } from './fixtures.js';

/** Shell functions every step uses; $V is the vjail CLI, $W the workload, $K the kernel's name. */
export const STEPS = `
set -u
V="node $VJAIL_BIN"
count() { if [ -f "$1" ]; then grep -c . "$1"; else echo 0; fi; }
# grow FILE N PID: wait until FILE has N lines while PID lives (at most 10 minutes)
grow() {
  i=0
  while [ "$(count "$1")" -lt "$2" ]; do
    kill -0 "$3" 2>/dev/null || return 1
    i=$((i + 1)); [ "$i" -gt 6000 ] && return 1
    sleep 0.1
  done
}
# start DIR PROFILE MODE IMAGE: run the workload in a jail (glibc kept to baseline x86-64 code, which
# every CPU here has), let it count 40, checkpoint it into DIR/IMAGE
start() {
  mkdir -p "$1"
  c=none
  $V run --cpu-baseline --profile "$2" -- "$W" "$1" "$3" > "$1/run-$K.log" 2>&1 &
  r=$!
  if grow "$1/out" 40 $r; then
    $V checkpoint --pid "$(cat "$1/pid")" --image "$1/$4" > "$1/checkpoint-$K.log" 2>&1
    c=$?
    echo $c > "$1/checkpoint-$K.status"
  fi
  [ "$c" = 0 ] || kill -TERM $r 2>/dev/null
  wait $r
  echo $? > "$1/run-$K.status"
}
# hop DIR FROM [TO]: restore DIR/FROM, let it count 40 more, then checkpoint it into DIR/TO, or end it
hop() {
  c=none
  base=$(count "$1/out")
  echo $base > "$1/base-$K"
  $V restore -v "$1/$2" > "$1/restore-$K.log" 2>&1 &
  r=$!
  if grow "$1/out" $((base + 40)) $r; then
    if [ -n "\${3:-}" ]; then
      $V checkpoint --pid "$(cat "$1/pid")" --image "$1/$3" > "$1/checkpoint-$K.log" 2>&1
      c=$?
      echo $c > "$1/checkpoint-$K.status"
    fi
  fi
  # Ended here unless a checkpoint did (a failed one leaves it running).
  [ "$c" = 0 ] || kill -TERM $r 2>/dev/null
  wait $r
  echo $? > "$1/restore-$K.status"
}
# i386: the i386 entry (int 0x80) without a jail, then uname, olduname and oldolduname through it under linux-4.19
i386() {
  d="$SHARE/i386-$K"
  mkdir -p "$d"
  "$SHARE/probe" int80-uname > "$d/bare" 2>&1
  $V run --profile linux-4.19 -- "$SHARE/probe" int80-uname > "$d/uname" 2>&1
  $V run --profile linux-4.19 -- "$SHARE/kernelinfo" olduname > "$d/olduname" 2>&1
  $V run --profile linux-4.19 -- "$SHARE/kernelinfo" oldolduname > "$d/oldolduname" 2>&1
  # a policy denying socket and shmget holds on the socketcall and ipc multiplexers
  echo '{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86"],"syscalls":[{"names":["socket","shmget"],"action":"SCMP_ACT_ERRNO"}]}' > "$d/deny.json"
  { "$SHARE/probe" int80-socket; "$SHARE/probe" int80-shmget 1; } > "$d/mux-bare" 2>&1
  { $V run --policy "$d/deny.json" -- "$SHARE/probe" int80-socket; $V run --policy "$d/deny.json" -- "$SHARE/probe" int80-shmget 1; } > "$d/mux" 2>&1
}
# bare MODE: the workload without a jail, on this kernel as it is
bare() {
  mkdir -p "$SHARE/bare-$1-$K"
  timeout 2 "$W" "$SHARE/bare-$1-$K" "$1"
  uname -r > "$SHARE/bare-$1-$K/release"
}
cd "$SHARE"
`;

const env = (share: string, kernel: string): Record<string, string> => ({
  VJAIL_BIN: vjailBin,
  W: join(share, 'xk-workload'),
  K: kernel,
  SHARE: share,
});

export async function onHost(share: string, script: string): Promise<void> {
  const r = await execa('sh', ['-c', STEPS + script], { env: env(share, 'host'), reject: false, timeout: 900_000 });
  if (r.exitCode !== 0) throw new Error(`host steps exited with ${r.exitCode}: ${r.stderr}`);
}

export async function inGuest(share: string, kernel: KernelName, script: string): Promise<void> {
  const r = await runInKernel({
    kernel,
    argv: ['sh', '-c', STEPS + script],
    shareDir: share,
    // vjail's plan cache and named-jail state need somewhere writable in the guest.
    env: { ...env(share, kernel), VJAIL_CACHE_DIR: '/tmp/vjail-cache', VJAIL_STATE_DIR: '/tmp/vjail-state' },
    cpu: 'max',
    timeoutMs: 900_000,
  });
  if (r.exitCode !== 0) throw new Error(`Linux ${kernel} steps exited with ${r.exitCode}: ${r.stderr}`);
}

let share = '';

/**
 * A directory the guests see at the same path, with the workload in it and
 * a subdirectory per workload; the readers below look in it.
 */
export function makeShare(dirs: string[]): string {
  share = mkdtempSync(join(tmpdir(), 'vjail-xk-'));
  for (const name of ['xk-workload', 'probe', 'kernelinfo']) {
    const to = join(share, name);
    copyFileSync(fixture(name), to);
    chmodSync(to, 0o755);
  }
  for (const d of dirs) mkdirSync(join(share, d));
  return share;
}

/** Remove it, unless VJAIL_KEEP_SCRATCH is set (to read every step's log). */
export function dropShare(): void {
  if (share && !process.env.VJAIL_KEEP_SCRATCH) rmSync(share, { recursive: true, force: true });
}

export const read = (...p: string[]): string => (existsSync(join(share, ...p)) ? readFileSync(join(share, ...p), 'utf8') : '');
/** A step's log, for failure messages. */
export const log = (dir: string, step: string): string => `${step} log:\n${read(dir, `${step}.log`) || '(none)'}`;
export const status = (dir: string, step: string): number | undefined => {
  const s = read(dir, `${step}.status`).trim();
  return s ? Number(s) : undefined;
};

export interface Round {
  n: number;
  fields: Record<string, string>;
  text: string;
}

export function rounds(dir: string): Round[] {
  return read(dir, 'out')
    .split('\n')
    .filter(Boolean)
    .map((text) => {
      const [n, ...kv] = text.split(' ');
      return { n: Number(n), fields: Object.fromEntries(kv.map((f) => f.split('=') as [string, string])), text };
    });
}

/** The rounds a restore on `kernel` made: from its base to the next hop's. */
export function roundsOn(dir: string, kernel: string, next?: string): Round[] {
  const all = rounds(dir);
  const base = Number(read(dir, `base-${kernel}`));
  const end = next && read(dir, `base-${next}`) ? Number(read(dir, `base-${next}`)) : all.length;
  return all.slice(base, end);
}

export function expectConsecutive(r: Round[], why: string): void {
  const gap = r.findIndex((x, i) => x.n !== i);
  expect(gap, `${why}: line ${gap + 1} is "${r[gap]?.text}"`).toBe(-1);
}

/** Every call of every round gave what it should: "ok", and the profile's release for osrelease. */
export function expectAllOk(r: Round[], why: string, release?: string): void {
  const bad = r.find((x) => Object.entries(x.fields).some(([k, v]) => (k === 'osrelease' ? v !== release : v !== 'ok')));
  expect(bad?.text, why).toBeUndefined();
}

export const NEWER = ['fchmodat2', 'futex_wake', 'futex_wait-EAGAIN', 'futex_wait-ETIMEDOUT', 'cachestat'];
export const TIME = ['realtime', 'vdso-time', 'monotonic'];

