/** The utsname fields a profile presents (uname(2), /proc/version, /proc/sys/kernel/*). */
export interface UnameFields {
  sysname: string;
  /** Absent: the host's hostname, read when the plan is made. */
  nodename?: string;
  release: string;
  version: string;
  machine: string;
  domainname: string;
}

/**
 * A kernel-ABI profile: "this workload runs on Linux X.Y". Loaded from
 * profiles/NAME.json and validated by src/profile/load.ts.
 */
export interface Profile {
  name: string;
  description: string;
  /**
   * Kernel release whose syscall set the workload sees ("4.19"). For the
   * `host` profile this is filled in from the running kernel at load time.
   */
  kernel: string;
  /** True for the pass-through `host` profile: nothing is presented differently. */
  isHost: boolean;
  uname: UnameFields;
  /** Syscall names added to / removed from the set derived from the table. */
  overrides: { add: string[]; remove: string[] };
  /** Errno a caller gets when a shim fails (default ENOSYS). */
  shimErrorErrno: number;
}
