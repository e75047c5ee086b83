/*
 * What may have changed the jail's memory advice (the VmFlags of
 * /proc/PID/smaps: MADV_DONTFORK, DONTDUMP, WIPEONFORK, HUGEPAGE,
 * NOHUGEPAGE, mlock, mlock2's MLOCK_ONFAULT) since a checkpoint read it
 * before its freeze (src/checkpoint/parts/advice-watch.ts). The kernel
 * walks every page table to write smaps, tens of ms a GiB; read while the
 * jail runs, it need not be read again while the jail is stopped if the
 * supervisor saw no call that changes advice meanwhile, and none it saw
 * before could still be running.
 *
 * The plan notifies every such call that would run unseen (madvise and
 * process_madvise with advice 10-19, the mlock family, mmap with
 * MAP_LOCKED, io_uring_setup: src/plan/advice.ts) and the kernel then runs
 * it as made. Each receiver notes every notification here:
 * - a call that changes advice counts one in `gen` and marks its thread
 *   pending: the call may still be running until that thread's next
 *   notification (or until it is gone, or waits in another call);
 * - io_uring_setup makes the advice untrusted for good: a ring's
 *   IORING_OP_MADVISE changes advice without a syscall.
 * The state lives in a memfd named "vjail-advice" that the checkpointer
 * opens through /proc/PID/fd of the supervisor and reads: the counter
 * first, then the rest.
 */
#ifndef VJAIL_ADVICEWATCH_H
#define VJAIL_ADVICEWATCH_H

#include <linux/seccomp.h>
#include <stdatomic.h>
#include <stdint.h>

#define AW_MAGIC 0x61647677u
#define AW_VERSION 1u
#define AW_PENDING 64
#define AW_NAME "vjail-advice"

/* The memfd's layout (read by src/checkpoint/parts/advice-watch.ts at these offsets). */
struct aw_shared {
	uint32_t magic;              /* 0 */
	uint32_t version;            /* 4 */
	_Atomic uint64_t gen;        /* 8: calls seen that change advice */
	_Atomic uint32_t untrusted;  /* 16: never trust advice read early (a ring was made, a caller not seen) */
	_Atomic uint32_t overflow;   /* 20: more pending threads than slots: untrusted too */
	_Atomic int32_t pending[AW_PENDING]; /* 24: threads whose call may still run (0: free) */
};

struct advice_watch {
	int fd; /* the memfd, -1 when not watching */
	struct aw_shared *m;
	unsigned npending; /* slots in use, for the receivers' quick check */
};

/* Start watching: make and map the memfd. 0 or errno. */
int aw_init(struct advice_watch *w);
/* Note one notification (any receiver, one at a time). */
void aw_note(struct advice_watch *w, const struct seccomp_notif *n);
/* Stop watching: unmap and close (again a no-op once done). */
void aw_release(struct advice_watch *w);

#endif
