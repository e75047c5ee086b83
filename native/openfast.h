/*
 * The open shim's fast path, in the supervisor's receiving thread: a plain
 * open/openat of a regular file or directory is made in C, wearing the
 * caller's identity, and installed in the caller with ADDFD, without the
 * hop to JavaScript. Everything it cannot decide exactly goes to the
 * JavaScript shim (shims/open.ts), which stays the reference.
 */
#ifndef VJAIL_OPENFAST_H
#define VJAIL_OPENFAST_H

#include "idcache.h"

#include <linux/capability.h>
#include <linux/seccomp.h>
#include <stdint.h>
#include <sys/types.h>

#define OF_STATUS_SLOTS 8
#define OF_PATH_MAX 4096
#define OF_MISS_SLOTS 512 /* a power of two */

/* An open /proc/TID/status, read again for each call of that thread. */
struct of_status_slot {
	pid_t tid;
	int fd;
};

struct open_fast {
	int enabled; /* set before the thread starts: the open shim answers open and openat */
	int ready; /* the thread has its own fs_struct and knows its identity */
	struct of_identity own;
	struct __user_cap_data_struct own_caps[2];
	int own_dumpable;
	uint64_t root_mnt, root_ino; /* the supervisor's root (the caller's must be the same) */
	char userns[64]; /* the supervisor's user namespace, as /proc/self/ns/user names it */
	uint32_t umask_now; /* the thread's own umask (its fs_struct is its own) */
	struct of_status_slot status[OF_STATUS_SLOTS];
	unsigned next_slot;
	char path[OF_PATH_MAX];
	char text[4096];
	struct of_identity want;
	/* The identity the thread wears now (kept from call to call) and how it differs from its own. */
	struct of_identity worn;
	int worn_changed;
	/* Identities kept from one open to the next (noted by every receiver: idc_note). */
	struct idcache ids;
	/*
	 * Hashes of absolute paths whose last open found nothing (a header
	 * searched along an include path): the next open of one walks once,
	 * O_PATH, instead of a look then an open. Only a guess of which way
	 * is cheaper; either way answers the same.
	 */
	uint64_t misses[OF_MISS_SLOTS];
};

/* Called once by the receiving thread before its loop (no-op unless enabled). */
void of_thread_init(struct open_fast *of);
/* 0 answered (or the caller is gone), -1 JavaScript must answer. Only on the receiving thread. */
int of_try(struct open_fast *of, int listener, const struct seccomp_notif *n);
/* Close the cached status files and the identity cache's pidfds (again a no-op once done). */
void of_release(struct open_fast *of);
/* of_release, and the profile build's report. */
void of_destroy(struct open_fast *of);

#endif
