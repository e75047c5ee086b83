/**
 * One temporary directory per test run, removed when the run ends: every
 * test's mkdtemp(tmpdir()) lands in it (TMPDIR, which the test workers and
 * every process they start inherit), so that a run leaves nothing behind in
 * /tmp, whatever a test does not remove itself (images of a GiB among them).
 * VJAIL_TEST_CACHE names the directory it replaces, for caches.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  // Caches kept from run to run (compiled fixtures) stay where they were.
  process.env.VJAIL_TEST_CACHE ??= tmpdir();
  const dir = mkdtempSync(join(tmpdir(), 'vjail-tests-'));
  // As /tmp: jails running as other users (nobody) reach the files tests make for them.
  chmodSync(dir, 0o1777);
  process.env.TMPDIR = dir;
  return () => {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch (e) {
      process.stderr.write(`vjail tests: could not remove ${dir}: ${(e as Error).message}\n`);
    }
  };
}
