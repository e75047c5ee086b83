/*
 * Shared memory between a jail's processes moves between kernels: images of
 * test/fixtures/shmworkers.c (a parent and three forked workers sharing a
 * region) taken on the host restore on Debian's 6.1 kernel under qemu, and
 * images taken on 6.12 restore on the host. A restored jail runs 20 more
 * rounds (every worker echoing each), then is asked to finish.
 *
 *   host  start a (anon), m (memfd), p (POSIX shm), d (deleted file in /dev/shm),
 *         e (deleted file in the shared directory), s (System V)
 *   6.1   restore each; /dev/shm there never had p's or d's file; the shared
 *         directory (9p) cannot be mapped shared, so e's comes back in /dev/shm
 *   6.12  start b (anon), t (System V)
 *   host  restore b and t
 */
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureKernel, runInKernel, type KernelName } from '../src/vm/index.js';
import { fixture, vjailBin } from './helpers/fixtures.js';

const STEPS = `
set -u
V="node $VJAIL_BIN"
say() { echo "$K $(date +%T) $*" >&2; }
count() { if [ -f "$1" ]; then grep -c . "$1"; else echo 0; fi; }
# grow FILE N PID: wait until FILE has N lines while PID lives (at most 2 minutes)
grow() {
  i=0
  while [ "$(count "$1")" -lt "$2" ]; do
    [ "$(state "$3")" = gone ] && { say "$1: the jail ended at $(count "$1") of $2 lines"; return 1; }
    i=$((i + 1)); [ "$i" -gt 1200 ] && { say "$1: $(count "$1") of $2 lines after 2 minutes"; return 1; }
    sleep 0.1
  done
}
# state PID: its state letter, or "gone" once it ended (a zombie counts as ended)
state() { s=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1); case "$s" in ''|Z) echo gone ;; *) echo "$s" ;; esac; }
# describe PATTERN: each process of a jail (and vjail's for it), where it waits
describe() {
  for q in $(pgrep -f "$1"); do
    say "  $q $(state $q) $(tr '\\0' ' ' < /proc/$q/cmdline 2>/dev/null | cut -c1-80) wchan=$(cat /proc/$q/wchan 2>/dev/null) syscall=$(cut -d' ' -f1 /proc/$q/syscall 2>/dev/null)"
  done
}
# end PID PATTERN SECS WHAT: wait at most SECS seconds for PID (vjail run or restore) to end;
# past that, say where the jail's processes are and kill them all. Prints PID's exit status.
end() {
  i=0
  while [ "$(state "$1")" != gone ]; do
    i=$((i + 1))
    if [ "$i" -gt $(($3 * 10)) ]; then
      say "$4 has not ended after $3 s; its processes:"; describe "$2"
      pkill -KILL -f "$2"; break
    fi
    sleep 0.1
  done
  wait "$1"; echo $?
}
# start DIR MODE [ARG]: run the fixture in a jail with its own namespaces, checkpoint it after 20 rounds
start() {
  say "start $1 ($2)"
  mkdir -p "$SHARE/$1"
  jail="$SHARE/$1/"
  $V run --pid-ns --cpu-baseline -- "$SHARE/shmworkers" "$2" "$SHARE/$1/out" \${3:+"$3"} > "$SHARE/$1/run-$K.log" 2>&1 &
  r=$!
  c=none
  if grow "$SHARE/$1/out" 20 $r; then
    p=$(for q in $(pgrep -f "shmworkers $2 $SHARE/$1/out"); do grep -qs "^NSpid:.*[[:space:]]2$" /proc/$q/status && echo $q; done)
    say "checkpoint $1 (pid $p)"
    timeout -k 5 240 $V checkpoint --pid "$p" --image "$SHARE/$1/img" > "$SHARE/$1/checkpoint-$K.log" 2>&1
    c=$?
    [ "$c" = 124 ] && say "checkpoint of $1 did not finish within 240 s"
  fi
  echo $c > "$SHARE/$1/checkpoint-$K.status"
  # Not checkpointed: end every process of the jail (the workers outlive a parent killed alone).
  [ "$c" = 0 ] || pkill -KILL -f "$jail"
  end $r "$jail" 60 "vjail run of $1" > "$SHARE/$1/run-$K.status"
  say "start $1: checkpoint status $c, run status $(cat "$SHARE/$1/run-$K.status")"
}
# hop DIR: restore it, let it run 20 more rounds, ask it to finish
hop() {
  say "hop $1"
  base=$(count "$SHARE/$1/out")
  echo $base > "$SHARE/$1/base-$K"
  $V restore -v "$SHARE/$1/img" > "$SHARE/$1/restore-$K.log" 2>&1 &
  r=$!
  grow "$SHARE/$1/out" $((base + 20)) $r
  touch "$SHARE/$1/out.stop"
  end $r "$SHARE/$1/" 60 "the restored $1" > "$SHARE/$1/restore-$K.status"
  say "hop $1: restore status $(cat "$SHARE/$1/restore-$K.status")"
}
cd "$SHARE"
`;

let share = '';
const posixName = `/vjail-xk-${process.pid}`;

const env = (kernel: string): Record<string, string> => ({ VJAIL_BIN: vjailBin, SHARE: share, K: kernel });

async function onHost(script: string): Promise<void> {
  const r = await execa('sh', ['-c', STEPS + script], { env: env('host'), reject: false, timeout: 900_000 });
  if (r.exitCode !== 0) throw new Error(`host steps exited with ${r.exitCode}: ${r.stderr}`);
}

async function inGuest(kernel: KernelName, script: string): Promise<void> {
  const r = await runInKernel({
    kernel,
    argv: ['sh', '-c', STEPS + script],
    shareDir: share,
    env: { ...env(kernel), VJAIL_CACHE_DIR: '/tmp/vjail-cache', VJAIL_STATE_DIR: '/tmp/vjail-state' },
    cpu: 'max',
    timeoutMs: 900_000,
  });
  if (r.exitCode !== 0) throw new Error(`Linux ${kernel} steps exited with ${r.exitCode}: ${r.stderr}`);
}

const read = (...p: string[]): string => (existsSync(join(share, ...p)) ? readFileSync(join(share, ...p), 'utf8') : '');
const status = (dir: string, step: string): string => read(dir, `${step}.status`).trim();
const log = (dir: string, step: string): string => `${dir} ${step} log:\n${read(dir, `${step}.log`) || '(none)'}`;

beforeAll(async () => {
  await ensureKernel('6.1');
  await ensureKernel('6.12');
  share = mkdtempSync(join(tmpdir(), 'vjail-xk-shm-'));
  copyFileSync(fixture('shmworkers'), join(share, 'shmworkers'));
  chmodSync(join(share, 'shmworkers'), 0o755);
  for (const d of ['a', 'm', 'p', 'd', 'e', 's', 'b', 't']) mkdirSync(join(share, d));
  try {
    await onHost(`start a anon\nstart m memfd\nstart p posix ${posixName}\nstart d deleted /dev/shm${posixName}-deleted\nstart e deleted "$SHARE/e/data"\nstart s sysv\n`);
  } finally {
    rmSync(`/dev/shm${posixName}`, { force: true });
  }
  await inGuest('6.1', 'hop a\nhop m\nhop p\nhop d\nhop e\nhop s\n');
  await inGuest('6.12', 'start b anon\nstart t sysv\n');
  await onHost('hop b\nhop t\n');
}, 1_500_000);

afterAll(() => {
  if (share && !process.env.VJAIL_KEEP_SCRATCH) rmSync(share, { recursive: true, force: true });
});

/** Checkpointed where it ran, restored on `to`: every round there echoed by every worker, the count going on, the region the same. */
function expectCarriedOver(dir: string, from: string, to: string, renamed = false): string[] {
  expect(status(dir, `checkpoint-${from}`), log(dir, `checkpoint-${from}`)).toBe('0');
  expect(status(dir, `restore-${to}`), log(dir, `restore-${to}`)).toBe('0');
  const all = read(dir, 'out').split('\n').filter(Boolean);
  const roundLines = all.filter((l) => !l.startsWith('final'));
  const base = Number(read(dir, `base-${to}`));
  expect(roundLines.length, log(dir, `restore-${to}`)).toBeGreaterThanOrEqual(base + 20);
  const fields = roundLines.map((l) => l.split(' '));
  fields.forEach((f, i) => expect(Number(f[0]), `${dir}: ${roundLines[i]}`).toBe(i + 1));
  expect(fields.filter((f) => f[1] !== 'ok').map((f) => f.join(' '))).toEqual([]);
  expect(new Set(fields.map((f) => f.slice(renamed ? 4 : 3).join(' '))).size).toBe(1);
  return all.filter((l) => l.startsWith('final'));
}

const SYSV_FINAL = ['final message 1 hello-1', 'final message 2 hello-2', 'final message 3 hello-3', 'final idle 77 0', 'final done'];

describe('shared memory between processes across kernels', () => {
  it.each([['a', 'anon'], ['m', 'memfd'], ['p', 'POSIX shm'], ['d', 'deleted file']])('host → 6.1: %s (%s) stays shared between the processes', (dir) => {
    expect(expectCarriedOver(dir, 'host', '6.1')).toEqual(['final done']);
  });

  it('host → 6.1: a deleted file of a directory that cannot be mapped shared there comes back in /dev/shm, said so', () => {
    expect(expectCarriedOver('e', 'host', '6.1', true)).toEqual(['final done']);
    expect(read('e', 'restore-6.1.log')).toMatch(/the deleted file .*\/e\/data mapped by the image comes back as \/dev\/shm\/\S+ \(deleted\): .* cannot be mapped shared here/);
    const names = new Set(read('e', 'out').split('\n').filter((l) => l && !l.startsWith('final')).map((l) => l.split(' ')[3]));
    expect([...names].sort()).toEqual([expect.stringMatching(/^\/dev\/shm\/.*_\(deleted\)$/), `${join(share, 'e', 'data')}_(deleted)`]);
  });

  it('host → 6.1: System V shared memory, semaphores and messages', () => {
    expect(expectCarriedOver('s', 'host', '6.1')).toEqual(SYSV_FINAL);
  });

  it('6.12 → host: anonymous shared memory and System V objects come back', () => {
    expect(expectCarriedOver('b', '6.12', 'host')).toEqual(['final done']);
    expect(expectCarriedOver('t', '6.12', 'host')).toEqual(SYSV_FINAL);
  });
});
