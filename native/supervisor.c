#include "supervisor.h"
#include "caller.h"
#include "protocol.h"
#include "seccomp_compat.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define AUDIT_ARCH_X86_64_ 0xC000003EU
#define AUDIT_ARCH_I386_ 0x40000003U
#define RING_CAP 4096

uint64_t sup_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int sup_arch_index(uint32_t audit_arch)
{
	return audit_arch == AUDIT_ARCH_X86_64_ ? 0 : audit_arch == AUDIT_ARCH_I386_ ? 1 : -1;
}

int sup_init(struct supervisor *s, int listener, int native_answers, int sync_wake_up)
{
	memset(s, 0, sizeof *s);
	s->advice.fd = -1;
	s->listener = listener;
	s->native_answers = native_answers;
	s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	s->cap = RING_CAP;
	s->ring = calloc(RING_CAP, sizeof *s->ring);
	s->stats = calloc(SUP_ARCHES * SUP_MAX_NR, sizeof *s->stats);
	struct seccomp_notif_sizes sizes;
	s->notif_size = syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) == 0 ? sizes.seccomp_notif
										     : sizeof(struct seccomp_notif);
	if (s->wake_fd < 0 || !s->ring || !s->stats)
		return errno ? errno : ENOMEM;
	pthread_mutex_init(&s->mu, NULL);
	pthread_mutex_init(&s->stats_mu, NULL);
	pthread_cond_init(&s->space, NULL);
	/* Best effort: the kernel wakes the caller on our CPU when we answer
	 * (Linux 6.6+). Passed by value. Absent: answers are just slower. */
	if (sync_wake_up)
		ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP);
	return 0;
}

int sup_set_pool(struct supervisor *s, const uint8_t *pool, size_t len)
{
	free(s->pool);
	s->pool = malloc(len ? len : 1);
	if (!s->pool)
		return ENOMEM;
	memcpy(s->pool, pool, len);
	s->pool_len = len;
	return 0;
}

int sup_respond(struct supervisor *s, uint64_t id, int64_t val, int32_t err, uint32_t flags)
{
	struct seccomp_notif_resp resp = { .id = id, .val = val, .error = err ? -err : 0, .flags = flags };
	if (ioctl(s->listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) == 0)
		return 0;
	return errno;
}

static unsigned bucket_of(uint64_t ns)
{
	if (ns < 2)
		return 0;
	unsigned log2 = 63u - (unsigned)__builtin_clzll(ns);
	/* two extra bits below the leading one: 4 sub-buckets per octave */
	unsigned sub = log2 >= 2 ? (unsigned)((ns >> (log2 - 2)) & 3u) : 0u;
	unsigned b = log2 * 4u + sub;
	return b < SUP_HIST_BUCKETS ? b : SUP_HIST_BUCKETS - 1;
}

void sup_record(struct supervisor *s, uint32_t arch, int32_t nr, uint64_t t0_ns)
{
	int a = sup_arch_index(arch);
	if (a < 0 || nr < 0 || nr >= SUP_MAX_NR)
		return;
	uint64_t dt = sup_now_ns() - t0_ns;
	pthread_mutex_lock(&s->stats_mu);
	struct sup_stat *st = &s->stats[a * SUP_MAX_NR + nr];
	st->count++;
	st->total_ns += dt;
	st->hist[bucket_of(dt)]++;
	pthread_mutex_unlock(&s->stats_mu);
}

/* The answer, if the table has it: 0 answered, 1 the handshake, -1 not known. */
static int give_known_answer(struct supervisor *s, const struct seccomp_notif *n)
{
	int a = sup_arch_index(n->data.arch);
	if (a == 0 && n->data.nr == __NR_prctl && n->data.args[0] == VJAIL_HANDSHAKE_PRCTL) {
		sup_respond(s, n->id, 0, 0, 0);
		return 1;
	}
	if (!s->native_answers || a < 0 || n->data.nr < 0 || n->data.nr >= SUP_MAX_NR)
		return -1;
	const struct answer *ans = &s->table[a][n->data.nr];
	switch (ans->kind) {
	case ANS_VALUE:
		sup_respond(s, n->id, ans->value, 0, 0);
		return 0;
	case ANS_ERRNO:
		sup_respond(s, n->id, 0, ans->err, 0);
		return 0;
	case ANS_CONTINUE:
		sup_respond(s, n->id, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE);
		return 0;
	case ANS_STRUCT: {
		/* Check the caller is still the one that asked before writing into it:
		 * a dead caller's pid may already belong to another process. */
		if (ioctl(s->listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &n->id))
			return 0;
		int err = caller_write((pid_t)n->pid, n->data.args[ans->arg], s->pool + ans->off, ans->len);
		sup_respond(s, n->id, 0, err, 0);
		return 0;
	}
	default:
		return -1;
	}
}

int sup_answer_natively(struct supervisor *s, const struct seccomp_notif *n, uint64_t t0_ns)
{
	/* Before any answer lets the call run: a kept identity it may change is let go first. */
	int a = sup_arch_index(n->data.arch);
	if (a >= 0 && n->data.nr >= 0 && n->data.nr < SUP_MAX_NR)
		idc_note(&s->open_fast.ids, n, s->table[a][n->data.nr].track);
	aw_note(&s->advice, n);
	int answered = give_known_answer(s, n);
	if (answered == 0) {
		sup_record(s, n->data.arch, n->data.nr, t0_ns);
		atomic_fetch_add_explicit(&s->native_answered, 1, memory_order_relaxed);
	}
	return answered;
}

static void enqueue(struct supervisor *s, const struct seccomp_notif *n, uint64_t t0)
{
	pthread_mutex_lock(&s->mu);
	while (s->tail - s->head == s->cap && !atomic_load(&s->stopping))
		pthread_cond_wait(&s->space, &s->mu);
	if (s->tail - s->head == s->cap) {
		/* Paused while full: keep it aside, the loop ends right after. */
		s->spill.notif = *n;
		s->spill.t0_ns = t0;
		s->spilled = 1;
		pthread_mutex_unlock(&s->mu);
		return;
	}
	struct queued_notif *q = &s->ring[s->tail % s->cap];
	q->notif = *n;
	q->t0_ns = t0;
	s->tail++;
	pthread_mutex_unlock(&s->mu);
	uint64_t one = 1;
	if (write(s->wake_fd, &one, sizeof one) < 0) {
		/* eventfd counter overflow is impossible at this rate; nothing to do */
	}
}

int sup_pop(struct supervisor *s, struct queued_notif *out)
{
	int got = 0;
	pthread_mutex_lock(&s->mu);
	if (s->head != s->tail) {
		*out = s->ring[s->head % s->cap];
		s->head++;
		got = 1;
		pthread_cond_signal(&s->space);
	} else if (s->spilled) {
		*out = s->spill;
		s->spilled = 0;
		got = 1;
	}
	pthread_mutex_unlock(&s->mu);
	return got;
}

/* Sent by sup_stop to interrupt the thread's blocking receive (EINTR). */
static int stop_signal(void)
{
	return SIGRTMIN + 4;
}

static void on_stop_signal(int sig)
{
	(void)sig;
}

/* The filter has no task left: the listener polls as hung up. */
static int listener_hung_up(int listener)
{
	struct pollfd p = { .fd = listener, .events = POLLIN };
	return poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR | POLLNVAL));
}

/*
 * An open or openat the open shim's fast path may answer: with ADDFD, whose
 * wake-up of the caller is a plain one. Spinners (keepawake.h) serve only
 * those and the hand-overs to JavaScript (an eventfd's plain wake-up): every
 * other answer given here wakes the caller on this thread's CPU
 * (SYNC_WAKE_UP), which no spinner speeds up.
 */
static int is_fast_open(const struct supervisor *s, const struct seccomp_notif *n)
{
	return s->open_fast.ready && sup_arch_index(n->data.arch) == 0 &&
	       (n->data.nr == __NR_open || n->data.nr == __NR_openat);
}

static void *loop(void *arg)
{
	struct supervisor *s = arg;
	sigset_t unblock;
	sigemptyset(&unblock);
	sigaddset(&unblock, stop_signal());
	pthread_sigmask(SIG_UNBLOCK, &unblock, NULL);
	union sup_notif_buf buf;
	size_t size = sup_notif_buf_size(s);
	of_thread_init(&s->open_fast);
	/* Receive blocks in the kernel: no poll first, one syscall per notification. */
	while (!atomic_load(&s->stopping)) {
		memset(&buf, 0, size);
		if (ioctl(s->listener, SECCOMP_IOCTL_NOTIF_RECV, &buf.n) < 0) {
			if (errno == EINTR)
				continue;
			/* ENOENT: the caller went away before we received it, or no task is left. */
			if (errno == ENOENT && !listener_hung_up(s->listener))
				continue;
			if (errno == ENOENT)
				atomic_store(&s->hung_up, 1);
			else
				atomic_store(&s->thread_error, errno);
			break;
		}
		uint64_t t0 = sup_now_ns();
		int open = is_fast_open(s, &buf.n);
		if (open)
			ka_note(&s->awake, t0, (pid_t)buf.n.pid);
		if (sup_answer_natively(s, &buf.n, t0) < 0) {
			if (s->native_answers && of_try(&s->open_fast, s->listener, &buf.n) == 0) {
				sup_record(s, buf.n.data.arch, buf.n.data.nr, t0);
				atomic_fetch_add_explicit(&s->native_answered, 1, memory_order_relaxed);
				ka_extend(&s->awake, sup_now_ns());
			} else {
				if (!open)
					ka_note(&s->awake, t0, (pid_t)buf.n.pid);
				enqueue(s, &buf.n, t0);
			}
		}
	}
	uint64_t one = 1;
	if (write(s->wake_fd, &one, sizeof one) < 0) {
	}
	return NULL;
}

size_t sup_notif_buf_size(const struct supervisor *s)
{
	/* The kernel may write a larger struct than our headers know. */
	size_t size = s->notif_size > sizeof(struct seccomp_notif) ? s->notif_size : sizeof(struct seccomp_notif);
	return size > sizeof(union sup_notif_buf) ? sizeof(union sup_notif_buf) : size;
}

int sup_start(struct supervisor *s)
{
	atomic_store(&s->stopping, 0);
	if (s->spin && !s->awake_started) {
		int err = ka_start(&s->awake);
		if (err)
			return err;
		s->awake_started = 1;
	}
	struct sigaction sa = { .sa_handler = on_stop_signal }; /* no SA_RESTART: the receive must return */
	sigemptyset(&sa.sa_mask);
	if (sigaction(stop_signal(), &sa, NULL))
		return errno;
	int err = pthread_create(&s->thread, NULL, loop, s);
	if (!err)
		s->thread_started = 1;
	return err;
}

/* Interrupt the thread's receive (or its wait for ring space) and join it. */
static void join_thread(struct supervisor *s)
{
	atomic_store(&s->stopping, 1);
	pthread_mutex_lock(&s->mu);
	pthread_cond_broadcast(&s->space);
	pthread_mutex_unlock(&s->mu);
	/* A signal sent just before the thread enters the receive is lost: repeat until it is out. */
	for (;;) {
		pthread_kill(s->thread, stop_signal());
		struct timespec at;
		clock_gettime(CLOCK_REALTIME, &at);
		at.tv_nsec += 1000000;
		if (at.tv_nsec >= 1000000000) {
			at.tv_sec++;
			at.tv_nsec -= 1000000000;
		}
		if (pthread_timedjoin_np(s->thread, NULL, &at) == 0)
			break;
	}
	s->thread_started = 0;
}

void sup_pause(struct supervisor *s)
{
	if (s->thread_started)
		join_thread(s);
}

void sup_stop(struct supervisor *s)
{
	/* JavaScript will not drain the ring any more. */
	pthread_mutex_lock(&s->mu);
	s->head = s->tail;
	s->spilled = 0;
	pthread_mutex_unlock(&s->mu);
	if (s->thread_started)
		join_thread(s);
	if (s->awake_started)
		ka_stop(&s->awake);
}

void sup_destroy(struct supervisor *s)
{
	sup_stop(s);
	of_destroy(&s->open_fast);
	aw_release(&s->advice);
	if (s->wake_fd >= 0)
		close(s->wake_fd);
	if (s->listener >= 0)
		close(s->listener);
	s->wake_fd = s->listener = -1;
	free(s->ring);
	free(s->stats);
	free(s->pool);
	s->ring = NULL;
	s->stats = NULL;
	s->pool = NULL;
}
