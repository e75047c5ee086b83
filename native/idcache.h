/*
 * Caller identities the open fast path reuses from one open to the next,
 * instead of reading /proc/TID/status each time, and the calls that end
 * them. An entry holds what the fast path learnt of one thread (its ids,
 * groups and effective capabilities; its user namespace and root are
 * vjail's) and is used only while that stays true:
 * - only a thread changes its own credentials, by calls the plan then has
 *   notified (src/plan/identity.ts): each one voids the caller's entry before
 *   the kernel runs it, and the caller cannot open again until it returned;
 * - calls that change other threads (execve by a thread that is not the
 *   leader hands the leader's thread id to the new program; chroot and
 *   pivot_root move others' roots) void every entry, and none is made again
 *   until the caller has come back (its next notification) or is gone;
 * - an entry is bound to its thread by a pidfd: once that thread is gone,
 *   its id may be another's and the entry is void;
 * - it is made only from a status read while the caller still waited in
 *   its notification (so not in the middle of a change of its own).
 * No jail task can hide those calls behind a seccomp listener of its own:
 * the kernel refuses a second listener in a filter chain (EBUSY), and
 * vjail's filter has one.
 * The umask is shared between threads and is never taken from an entry.
 */
#ifndef VJAIL_IDCACHE_H
#define VJAIL_IDCACHE_H

#include <linux/seccomp.h>
#include <stdint.h>
#include <sys/types.h>

#define OF_MAX_GROUPS 64
#define IDC_ENTRIES 32
#define IDC_PENDING 32

/* Whose rights a lookup and open run with. */
struct of_identity {
	uint32_t euid, egid, fsuid, fsgid;
	uint32_t ngroups;
	uint32_t groups[OF_MAX_GROUPS];
	uint64_t cap_eff;
	uint32_t umask;
};

/* What a notified call may change (the answer table's track byte, from src/plan/identity.ts). */
enum idc_track {
	IDC_NONE = 0,
	IDC_OWN = 1, /* the caller's own credentials, namespaces or root */
	IDC_OTHERS = 2, /* other threads' root (chroot, pivot_root) */
	IDC_EXEC = 3, /* execve, execveat */
};

struct idc_entry {
	pid_t tid; /* 0: free */
	int pidfd; /* the thread it was read from */
	uint64_t used;
	struct of_identity id;
};

/* A call that changes other threads, sent but not known to be over. */
struct idc_pending {
	pid_t tid;
	int pidfd;
};

struct idcache {
	int on; /* set before the receiving thread starts: the plan notifies every call that ends an entry */
	int off; /* off for good (more calls pending than fit, or one from a caller vjail does not see) */
	unsigned npending;
	uint64_t clock;
	struct idc_entry e[IDC_ENTRIES];
	struct idc_pending p[IDC_PENDING];
};

void idc_init(struct idcache *c);
/* Every notification, before it is answered (by any receiver): `track` is its answer table byte. */
void idc_note(struct idcache *c, const struct seccomp_notif *n, uint8_t track);
/* The identity of thread `tid` while its entry holds, or NULL. */
const struct of_identity *idc_find(struct idcache *c, pid_t tid);
/* A pidfd of `tid` to bind a new entry to (taken before the status read), or -1: no entry can be made now. */
int idc_begin(struct idcache *c, pid_t tid);
/* Keep `id` for `tid`, read after idc_begin and while the caller still waited; takes `pidfd`. */
void idc_store(struct idcache *c, pid_t tid, int pidfd, const struct of_identity *id);
void idc_destroy(struct idcache *c);

#endif
