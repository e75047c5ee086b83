/*
 * The protocol between `vjail run`'s native front end (vjail-run.c) and the
 * resident supervisor (src/resident/), over a SOCK_SEQPACKET unix socket:
 * one message per packet, its first byte saying what it is.
 *
 *  front -> resident  'R' request: NUL-terminated "key=value" strings
 *                         (cwd, profile, policy, emulate, kernelFiles, receiver, spin, pidNs, stats, ...)
 *  resident -> front  'O' planned: uint32 filter length, the BPF program,
 *                         then NUL-terminated records: "W<warning>", "B<source>:<target>"
 *                     'F' fall back, then an optional reason: the full CLI handles this run
 *                         (it says what is wrong; the front end shows the reason with --stats)
 *  front -> resident  'S' the workload's seccomp listener (SCM_RIGHTS)
 *  resident -> front  'A' supervising, or 'F' (the workload has not run yet)
 *                     'W' a warning line to print on stderr while the jail runs
 *  resident -> front  'O' may also carry "C<cgroup>": the jail's own cgroup, for vjail-init to join
 *  front -> resident  'E' vjail-init has exited
 *  resident -> front  'T' with "stats=1" in the request: the --stats table, printed on stderr as it is
 *  resident -> front  'K' nothing of the jail runs on (what was left in its cgroup is killed)
 *  front closes the connection then: the jail is over.
 */
#ifndef VJAIL_RESIDENT_PROTO_H
#define VJAIL_RESIDENT_PROTO_H

#define RESIDENT_REQUEST 'R'
#define RESIDENT_PLANNED 'O'
#define RESIDENT_FALLBACK 'F'
#define RESIDENT_LISTENER 'S'
#define RESIDENT_SUPERVISING 'A'
#define RESIDENT_WARNING 'W'
#define RESIDENT_ENDED 'E'
#define RESIDENT_KILLED 'K'
#define RESIDENT_STATS 'T'

/* Largest message either side sends (a filter is at most 4096 instructions of 8 bytes). */
#define RESIDENT_MAX_MSG (64 * 1024)

#endif
