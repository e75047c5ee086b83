/*
 * The supervisor loop: a native thread receives seccomp notifications,
 * answers the ones whose answer is known in advance (the answer table, built
 * from the plan) without touching JavaScript, and queues the rest for the
 * JavaScript shims, waking the Node loop through an eventfd.
 *
 * When most notifications need JavaScript, that hand-off costs a thread
 * wake-up per call, so the thread can be paused and the Node loop receives
 * on the listener itself (supervisor_napi.c decides); sup_answer_natively
 * serves both.
 */
#ifndef VJAIL_SUPERVISOR_H
#define VJAIL_SUPERVISOR_H

#include <linux/seccomp.h>
#include "advicewatch.h"
#include "keepawake.h"
#include "openfast.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define SUP_ARCHES 2 /* 0 = x86_64, 1 = i386 */
#define SUP_MAX_NR 1024
#define SUP_HIST_BUCKETS 128 /* 4 buckets per power of two of nanoseconds */

enum answer_kind {
	ANS_JS = 0, /* ask JavaScript */
	ANS_VALUE = 1,
	ANS_ERRNO = 2,
	ANS_STRUCT = 3, /* copy pool[off..off+len) to the pointer in args[arg], return 0 */
	ANS_CONTINUE = 4,
};

struct answer {
	uint8_t kind;
	uint8_t arg;
	uint16_t len;
	int32_t err;
	int64_t value;
	uint32_t off;
	uint8_t track; /* what the call may change of the open fast path's kept identities (enum idc_track) */
};

struct sup_stat {
	uint64_t count;
	uint64_t total_ns;
	uint32_t hist[SUP_HIST_BUCKETS];
};

struct queued_notif {
	struct seccomp_notif notif;
	uint64_t t0_ns;
};

/* Room for the kernel's struct seccomp_notif, which may grow. */
union sup_notif_buf {
	struct seccomp_notif n;
	uint8_t raw[512];
};

struct supervisor {
	int listener;
	int wake_fd; /* eventfd: thread -> JavaScript side */
	pthread_t thread;
	int thread_started;
	int native_answers; /* 0 in trace mode: everything goes to JavaScript */
	struct answer table[SUP_ARCHES][SUP_MAX_NR];
	uint8_t *pool;
	size_t pool_len;
	size_t notif_size; /* kernel's sizeof(struct seccomp_notif) */

	pthread_mutex_t mu;
	pthread_cond_t space;
	struct queued_notif *ring;
	unsigned head, tail, cap;

	/* A notification the thread received while being paused with the ring full. */
	struct queued_notif spill;
	int spilled;

	atomic_ullong native_answered; /* by either receiver: how often JavaScript was not needed */
	atomic_int stopping; /* set by sup_stop / sup_pause */
	atomic_int hung_up; /* every filtered task has exited */
	atomic_int thread_error;
	pthread_mutex_t stats_mu;
	struct sup_stat *stats; /* [SUP_ARCHES * SUP_MAX_NR] */

	/* The open shim's fast path, used by the receiving thread only (openfast.h). */
	struct open_fast open_fast;

	/* Calls that change memory advice, for checkpoints that read it early (advicewatch.h). */
	struct advice_watch advice;

	/* Set before sup_start: keep idle CPUs awake during bursts of notifications (keepawake.h). */
	int spin;
	struct keep_awake awake;
	int awake_started;
};

/* sync_wake_up: ask for SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (0 only to measure without it). */
int sup_init(struct supervisor *s, int listener, int native_answers, int sync_wake_up);
int sup_set_pool(struct supervisor *s, const uint8_t *pool, size_t len);
int sup_start(struct supervisor *s);
/* Pop one queued notification for JavaScript. Returns 1 if one was popped. */
int sup_pop(struct supervisor *s, struct queued_notif *out);
/* Send a response; 0 or positive errno (ENOENT: the caller is gone). */
int sup_respond(struct supervisor *s, uint64_t id, int64_t val, int32_t err, uint32_t flags);
void sup_record(struct supervisor *s, uint32_t arch, int32_t nr, uint64_t t0_ns);
void sup_stop(struct supervisor *s);
/* Stop the thread but keep what it queued (sup_pop still returns it); sup_start resumes. */
void sup_pause(struct supervisor *s);
/* Give a known answer, recorded in the stats and counted in native_answered (t0_ns: when it was
 * received): 0 answered, 1 the launch handshake (answered, not counted), -1 JavaScript must answer. */
int sup_answer_natively(struct supervisor *s, const struct seccomp_notif *n, uint64_t t0_ns);
/* Largest notification buffer the kernel may fill. */
size_t sup_notif_buf_size(const struct supervisor *s);
void sup_destroy(struct supervisor *s);
uint64_t sup_now_ns(void);
int sup_arch_index(uint32_t audit_arch);

#endif
