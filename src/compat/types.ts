/** One thing to run in every cell: a command, or one case of a suite. */
export interface CompatCase {
  name: string;
  /** Program and arguments, looked up in PATH inside the jail. */
  argv: string[];
}

/** What a kernel's runner is asked to do: every profile × every case, on the kernel it runs on. */
export interface CompatJob {
  /** Column label: "host" or a VM kernel name such as "6.1". */
  kernel: string;
  /** Profile names, or absolute paths of profile files. */
  profiles: string[];
  cases: CompatCase[];
  /** Working directory of each case (the share directory where it does not exist). */
  cwd: string;
  /** Directories put in front of PATH for each case (compiled fixtures, the runtest file's directory). */
  path: string[];
  /** Limit for one case; the jail is killed after it. */
  caseTimeoutMs: number;
  /** Directory every kernel can reach (the VM share directory). */
  shareDir: string;
}

export type Status = 'pass' | 'fail' | 'skip';

export interface CaseResult {
  name: string;
  status: 'pass' | 'fail';
  /** Exit code, or null if a signal ended it or it never ran. */
  exitCode: number | null;
  signal: string | null;
  seconds: number;
  stdout: string;
  stderr: string;
  /** Why it failed, in one line. */
  reason?: string;
}

export interface CellResult {
  profile: string;
  /** Column label ("host", "6.1", …). */
  kernel: string;
  /** `uname -r` of the kernel the cell ran on (empty when it could not run). */
  kernelRelease: string;
  /** The release the profile presents there (the running one for `host`). */
  profileRelease: string;
  status: Status;
  /** Sum of the cases' run times. */
  seconds: number;
  /** Why the cell was skipped, or the first line of its first failure. */
  reason?: string;
  cases: CaseResult[];
}

/** What a kernel's runner hands back. */
export interface KernelResult {
  kernel: string;
  release: string;
  cells: CellResult[];
}
