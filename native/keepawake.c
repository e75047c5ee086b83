/* Spinner threads that keep CPUs from halting during bursts of notifications (keepawake.h). */
#include "keepawake.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *spinner(void *p)
{
	struct keep_awake *k = ((struct ka_spinner *)p)->k;
	int i = ((struct ka_spinner *)p)->i;
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(k->cpus[i], &one);
	sched_setaffinity(0, sizeof one, &one);
	struct sched_param sp = { .sched_priority = 0 };
	/* Never in another task's way: a CPU running only this counts as idle to the scheduler. */
	if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp))
		return NULL;
	while (!atomic_load(&k->stopping)) {
		uint32_t g = atomic_load(&k->gen);
		if (mono_ns() < atomic_load(&k->until_ns)) {
			while (mono_ns() < atomic_load(&k->until_ns) && !atomic_load(&k->stopping))
				for (int s = 0; s < 16; s++)
					__builtin_ia32_pause();
			atomic_store(&k->cpu_ns[i], thread_cpu_ns());
			continue;
		}
		atomic_store(&k->state[i], KA_ASLEEP);
		/* Looked at again once marked asleep: ka_note sees the mark or this sees its deadline. */
		if (mono_ns() >= atomic_load(&k->until_ns) && !atomic_load(&k->stopping)) {
			/* Bounded: wakes every second to look at `stopping` even if no wake-up comes. */
			struct timespec second = { .tv_sec = 1 };
			syscall(SYS_futex, &k->gen, FUTEX_WAIT_PRIVATE, g, &second, NULL, 0);
		}
		atomic_store(&k->state[i], KA_SPINNING);
	}
	atomic_store(&k->cpu_ns[i], thread_cpu_ns());
	return NULL;
}

/*
 * The first word of a small /proc file: "/autogroup-25" of an autogroup file's
 * "/autogroup-25 nice 0" (without the nice value, set per group), "1" of a
 * sysctl's "1\n". "" for an empty file: a task whose session never made an
 * autogroup (one started by init without setsid, as a service's or a CI
 * runner's) is in the root group, and its file is empty. 0, or -1 if the
 * file cannot be read.
 */
static int read_word(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = 0;
	buf[strcspn(buf, " \n")] = 0;
	return 0;
}

int ka_start(struct keep_awake *k)
{
	memset(k, 0, sizeof *k);
	char on[8];
	/* Without autogroups (or no way to tell) every task counts as in the same group. */
	k->autogroups = read_word("/proc/sys/kernel/sched_autogroup_enabled", on, sizeof on) == 0 && !strcmp(on, "1") &&
			read_word("/proc/self/autogroup", k->autogroup, sizeof k->autogroup) == 0;
	cpu_set_t mine;
	if (sched_getaffinity(0, sizeof mine, &mine))
		return errno;
	int usable = CPU_COUNT(&mine);
	if (usable < 2)
		return 0; /* one CPU: every wake-up is already local */
	for (int c = 0; c < CPU_SETSIZE && k->n < KA_MAX_CPUS; c++)
		if (CPU_ISSET(c, &mine))
			k->cpus[k->n++] = c;
	/* The spinners must not take the signals meant for the process's other threads. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int err = 0, started = 0;
	for (int i = 0; i < k->n && !err; i++) {
		k->who[i] = (struct ka_spinner){ .k = k, .i = i };
		err = pthread_create(&k->threads[i], NULL, spinner, &k->who[i]);
		if (!err)
			started++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	k->n = k->running = started;
	if (err)
		ka_stop(k);
	return err;
}

/*
 * Wake the spinners marked asleep. One woken but not yet run (its CPU busy
 * with other tasks) is marked so, and not woken again: no futex call per
 * notification while a spinner waits for its CPU.
 */
static void wake_spinners(struct keep_awake *k)
{
	int any = 0;
	for (int i = 0; i < k->n; i++) {
		int asleep = KA_ASLEEP;
		if (atomic_compare_exchange_strong(&k->state[i], &asleep, KA_WOKEN))
			any = 1;
	}
	if (!any)
		return;
	atomic_fetch_add(&k->gen, 1);
	atomic_fetch_add_explicit(&k->wakes, 1, memory_order_relaxed);
	syscall(SYS_futex, &k->gen, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/*
 * SCHED_IDLE makes a spinner idle only to the tasks of its own scheduling
 * group. With autogroups (one group per session) a spinner of a supervisor
 * in another session than the caller, as the resident supervisor is, counts
 * as a whole group against the caller's: it would take a share of the
 * caller's CPU instead of giving it up at once. Looked up once per caller
 * thread (the last one is kept).
 */
static int same_group(struct keep_awake *k, pid_t tid)
{
	if (!k->autogroups)
		return 1;
	if (tid == k->checked_tid)
		return k->checked_same;
	char path[48], line[sizeof k->autogroup];
	snprintf(path, sizeof path, "/proc/%d/autogroup", (int)tid);
	int same = tid > 0 && read_word(path, line, sizeof line) == 0 && !strcmp(line, k->autogroup);
	k->checked_tid = tid;
	k->checked_same = same;
	return same;
}

void ka_note(struct keep_awake *k, uint64_t now_ns, pid_t tid)
{
	if (!k->running || !same_group(k, tid))
		return;
	uint64_t gap = now_ns - k->last_ns;
	k->last_ns = now_ns;
	if (gap > KA_GAP_NS)
		return; /* not a burst: the spinners sleep */
	atomic_store(&k->until_ns, now_ns + KA_WINDOW_NS);
	wake_spinners(k);
}

void ka_extend(struct keep_awake *k, uint64_t now_ns)
{
	if (!k->running || atomic_load_explicit(&k->until_ns, memory_order_relaxed) <= k->last_ns)
		return;
	atomic_store(&k->until_ns, now_ns + KA_WINDOW_NS);
}

uint64_t ka_cpu_ns(struct keep_awake *k)
{
	uint64_t sum = 0;
	for (int i = 0; i < k->n; i++)
		sum += atomic_load(&k->cpu_ns[i]);
	return sum;
}

void ka_stop(struct keep_awake *k)
{
	if (!k->running)
		return;
	atomic_store(&k->stopping, 1);
	atomic_store(&k->until_ns, 0);
	atomic_fetch_add(&k->gen, 1);
	syscall(SYS_futex, &k->gen, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
	for (int i = 0; i < k->n; i++)
		pthread_join(k->threads[i], NULL);
	k->running = 0;
}
