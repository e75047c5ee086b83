/*
 * Keeping idle CPUs awake while notifications come fast.
 *
 * An open answered with ADDFD wakes a sleeping task twice (the caller, to
 * install the descriptor; the supervisor, once it is installed) and the
 * scheduler puts each on an idle CPU. On a virtual machine whose idle vCPU
 * halts, each of those wake-ups waits for the host to run the vCPU again
 * (tens of microseconds). Spinner threads, one pinned to each CPU vjail may
 * use and of the lowest class (SCHED_IDLE: any other task of the same
 * scheduling group takes the CPU at once), keep those CPUs from halting, but
 * only for `window` after a notification answered with such a plain wake-up
 * (an open answered with ADDFD, a hand-over to JavaScript) that came within
 * `gap` of the one before, and only for callers of the supervisor's own
 * autogroup; otherwise they sleep. docs/SUPPORT.md says what it costs.
 */
#ifndef VJAIL_KEEPAWAKE_H
#define VJAIL_KEEPAWAKE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#define KA_MAX_CPUS 8
#define KA_WINDOW_NS 50000u /* spin at most this long after a notification */
#define KA_GAP_NS 200000u   /* only when it came this soon after the one before */

enum { KA_SPINNING = 0, KA_ASLEEP = 1, KA_WOKEN = 2 };

struct keep_awake;
struct ka_spinner {
	struct keep_awake *k;
	int i;
};

struct keep_awake {
	int n; /* spinner threads (0: off) */
	int running; /* not yet joined */
	struct ka_spinner who[KA_MAX_CPUS];
	pthread_t threads[KA_MAX_CPUS];
	int cpus[KA_MAX_CPUS];
	_Atomic uint64_t until_ns; /* spinners spin while the monotonic clock is before it */
	_Atomic uint32_t gen;	   /* futex word: bumped to wake sleeping spinners */
	atomic_int state[KA_MAX_CPUS]; /* each spinner's: KA_SPINNING, KA_ASLEEP, KA_WOKEN (not yet run since) */
	atomic_int stopping;
	_Atomic uint64_t cpu_ns[KA_MAX_CPUS]; /* CPU time each spinner has used */
	atomic_ullong wakes;		       /* times sleeping spinners were woken */
	uint64_t last_ns; /* receiving thread only: when the previous notification arrived */
	int autogroups;     /* autogroups are on and this process's can be read */
	char autogroup[48]; /* this process's autogroup ("/autogroup-25"); "" for the root group */
	pid_t checked_tid; /* receiving thread only: the last caller looked up, and whether it is in that group */
	int checked_same;
};

/* Start the spinners (asleep): 0, or an errno. Does nothing with fewer than 2 usable CPUs. */
int ka_start(struct keep_awake *k);
/* A notification to answer with a plain wake-up arrived from `tid` at `now_ns` (receiving thread
 * only): spin on if they come fast and the caller is in this process's scheduling group. */
void ka_note(struct keep_awake *k, uint64_t now_ns, pid_t tid);
/* The answer is given at `now_ns`: keep spinning for the next one, if spinning. */
void ka_extend(struct keep_awake *k, uint64_t now_ns);
/* CPU time all spinners have used, in ns. */
uint64_t ka_cpu_ns(struct keep_awake *k);
/* Stop and join the spinners. */
void ka_stop(struct keep_awake *k);

#endif
