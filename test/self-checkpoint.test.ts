import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixture, repoRoot } from './helpers/fixtures.js';
import { type Started, vjailStart, waitFor } from './helpers/run.js';

let selfcheck: string;
const tool = join(repoRoot, 'build', 'Release', 'vjail-self-checkpoint');

beforeAll(() => {
  // The header's hash in a define: the fixture cache is keyed by the source and flags.
  const header = join(repoRoot, 'native', 'include', 'vjail-self-checkpoint.h');
  const hash = createHash('sha256').update(readFileSync(header)).digest('hex').slice(0, 12);
  selfcheck = fixture('selfcheck', ['-I', join(repoRoot, 'native', 'include'), `-DVJAIL_HEADER_SHA=${hash}`]);
});

const lines = (path: string): string[] => (existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean) : []);

/** 0, 1, 2, ... with no gap and no repeat. */
function expectConsecutive(path: string): void {
  lines(path).forEach((l, i) => expect(l).toBe(String(i)));
}

async function until(cond: () => boolean, jail: Started, what: string): Promise<void> {
  if (await waitFor(cond, 90_000)) return;
  jail.kill('SIGKILL');
  const r = await jail;
  expect.fail(`${what} did not happen; the jail exited with ${r.exitCode} and said: ${r.stderr}`);
}

describe('checkpoint from inside the jail', () => {
  it('leave-running: the caller gets "checkpointed" and counts on; restored from that image it gets "restored" at the same point', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-self-'));
    const out = join(dir, 'out');
    const result = join(dir, 'result');
    const img = join(dir, 'image');
    const run = vjailStart(['run', '--pid-ns', '--self-checkpoint', '--', selfcheck, dir, img, 'run']);
    await until(() => lines(result).length === 1 && lines(out).length >= 40, run, 'the checkpoint and 20 more counts');
    expect(lines(result)).toEqual(['checkpointed 20']);
    expect(existsSync(join(img, 'IMAGE'))).toBe(true);
    run.kill('SIGTERM');
    const r = await run;
    expect(r.stderr).toMatch(/vjail: checkpoint asked for by process 2 of the jail: .*image written$/m);

    const seen = lines(out).length;
    const restored = vjailStart(['restore', img]);
    await until(() => lines(result).length === 2 && lines(out).length >= seen + 20, restored, 'the restored copy\'s answer');
    restored.kill('SIGKILL');
    await restored;
    expect(lines(result)).toEqual(['checkpointed 20', 'restored 20']);
    // The restored copy went on from 21: the original's counts after it are in the file before its own.
    expect(lines(out).slice(seen)[0]).toBe('21');
  }, 180_000);

  it('exit: the jail ends once the image is written (vjail run exits 0); restored, the caller gets "restored", and can checkpoint itself again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-self-'));
    const out = join(dir, 'out');
    const result = join(dir, 'result');
    const img = join(dir, 'image');
    const again = join(dir, 'image-again');
    const run = await vjailStart(['run', '--pid-ns', '--self-checkpoint', '--', selfcheck, dir, img, 'exit', again]);
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/image written; the jail ends$/m);
    expect(lines(result)).toEqual([]);
    expect(lines(out).length).toBe(21);

    // The restore's supervisor listens again where the restored environment says.
    const restored = vjailStart(['restore', img]);
    await until(() => lines(result).length === 2 && lines(out).length >= 60, restored, 'the restored copy\'s answers');
    restored.kill('SIGKILL');
    await restored;
    expect(lines(result)).toEqual(['restored 20', 'checkpointed 40']);
    expect(existsSync(join(again, 'IMAGE'))).toBe(true);
    expectConsecutive(out);
  }, 180_000);

  it('a checkpoint that fails leaves the jail running and tells the caller why', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-self-'));
    const out = join(dir, 'out');
    const result = join(dir, 'result');
    // The image directory exists already: refused.
    const run = vjailStart(['run', '--pid-ns', '--self-checkpoint', '--', selfcheck, dir, dir, 'exit']);
    await until(() => lines(result).length === 1 && lines(out).length >= 40, run, 'the answer and 20 more counts');
    run.kill('SIGTERM');
    await run;
    expect(lines(result)[0]).toMatch(/^failed 20 checkpoint failed: .*exists/);
    expectConsecutive(out);
  }, 180_000);

  it('a jail run without --self-checkpoint refuses in one line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-self-'));
    const result = join(dir, 'result');
    const run = vjailStart(['run', '--pid-ns', '--', selfcheck, dir, join(dir, 'image'), 'run']);
    await until(() => lines(result).length === 1, run, 'the answer');
    run.kill('SIGTERM');
    await run;
    expect(lines(result)).toEqual(['failed 20 not in a vjail jail that accepts checkpoint requests: VJAIL_SELF_CHECKPOINT is not set']);
  }, 180_000);

  it('the command form in a shell script: exit status 0 after the checkpoint, 3 in the restored copy', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-self-'));
    const result = join(dir, 'result');
    const img = join(dir, 'image');
    const script = `"${tool}" --image "${img}"; echo "status $?" >> "${result}"; exec sleep 1000`;
    const run = vjailStart(['run', '--pid-ns', '--self-checkpoint', '--', 'sh', '-c', script]);
    await until(() => lines(result).length === 1, run, 'the checkpoint');
    run.kill('SIGTERM');
    await run;
    expect(lines(result)).toEqual(['status 0']);
    const restored = vjailStart(['restore', img]);
    await until(() => lines(result).length === 2, restored, 'the restored copy\'s answer');
    restored.kill('SIGKILL');
    await restored;
    expect(lines(result)).toEqual(['status 0', 'status 3']);
  }, 180_000);
});
