import { existsSync, mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from './run.js';

/**
 * Freeze a process in a cgroup of its own (the v1 freezer where mounted, else cgroup v2); returns how
 * to thaw it. Tests stop a supervisor this way, not with SIGSTOP: a stopped supervisor is sent SIGHUP
 * and SIGCONT by the kernel when its process group becomes orphaned with stopped jobs (the jail's last
 * process in it exits while the test runner's parent is gone, say).
 */
export function freeze(pid: number): () => void {
  const v1 = '/sys/fs/cgroup/freezer';
  const v2 = existsSync('/sys/fs/cgroup/unified/cgroup.procs') ? '/sys/fs/cgroup/unified' : '/sys/fs/cgroup';
  const useV1 = existsSync(join(v1, 'cgroup.procs'));
  const dir = join(useV1 ? v1 : v2, `vjail-test-freeze.${process.pid}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'cgroup.procs'), String(pid));
  if (useV1) writeFileSync(join(dir, 'freezer.state'), 'FROZEN');
  else writeFileSync(join(dir, 'cgroup.freeze'), '1');
  return () => {
    if (useV1) writeFileSync(join(dir, 'freezer.state'), 'THAWED');
    else writeFileSync(join(dir, 'cgroup.freeze'), '0');
    // The cgroup goes once the supervisor, now free to record the end, has exited.
    void waitFor(() => {
      try {
        rmdirSync(dir);
        return true;
      } catch {
        return false;
      }
    }, 20_000);
  };
}

