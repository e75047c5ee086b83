/*
 * The control protocol between the supervisor (the Node addon) and the
 * vjail-init launcher, over a SOCK_SEQPACKET pair passed to vjail-init as fd 3.
 *
 *  supervisor -> init : one message: the BPF program (array of struct sock_filter)
 *  init/workload -> supervisor : fixed-size ctl_msg records, see CTL_*.
 */
#ifndef VJAIL_PROTOCOL_H
#define VJAIL_PROTOCOL_H

#include <stdint.h>

#define VJAIL_CTL_FD 3
/* With --pass-fd: a descriptor for the workload alone (restore's fd transfer socket); vjail-init closes its own copy. */
#define VJAIL_PASS_FD 4
/* With --preserve-fds N: fds 5..5+N-1 of vjail-init become the command's 3..3+N-1 (runc's --preserve-fds). */
#define VJAIL_PRESERVED_FD 5

/* prctl option the workload calls right after installing its filter; the
 * filter notifies it and the supervisor answers 0. Once it returns, the
 * supervisor holds the listener, so no notification can be lost at exec. */
#define VJAIL_HANDSHAKE_PRCTL 0x766a6169UL /* 'vjai' */

enum ctl_type {
	/* SCM_RIGHTS carries a pidfd of the workload; `a` is the fd number the
	 * seccomp listener will get in the workload (fetch it with pidfd_getfd). */
	CTL_HELLO = 1,
	/* Setup failed before exec; `a` = errno, `b` = which step (ctl_step). */
	CTL_SETUP_FAILED = 2,
	/* execvp failed; `a` = errno. */
	CTL_EXEC_FAILED = 3,
	/* The workload's main process ended; `a` = raw wait status. Sent once,
	 * when every process of the jail has ended. */
	CTL_EXIT = 4,
};

enum ctl_step {
	STEP_READ_FILTER = 1,
	STEP_PIDFD_OPEN = 2,
	STEP_NO_NEW_PRIVS = 3,
	STEP_SECCOMP = 4,
	STEP_HANDSHAKE = 5,
	STEP_FORK = 6,
	STEP_UNSHARE = 7,
	STEP_MOUNT_PROC = 8,
	STEP_CGROUP = 9,
	STEP_BIND = 10,
	STEP_TIME_NS = 11,
	STEP_LOCKDOWN = 12,
	STEP_USER_NS = 13,
	STEP_AMBIENT_CAPS = 14,
	STEP_ROOTFS = 15,
	STEP_ISOLATE = 16,
	STEP_PRESERVE_FDS = 17,
};

struct ctl_msg {
	uint32_t type;
	int32_t a;
	int64_t b;
};

#endif
