/*
 * Caller identities the open fast path reuses (idcache.h).
 */
#include "idcache.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL /* Linux 6.9: a pidfd for any thread, not only a leader */
#endif

static int pidfd_of(pid_t tid, unsigned flags)
{
	return (int)syscall(SYS_pidfd_open, tid, flags);
}

/* The pidfd's thread still runs (or is a zombie, which makes no calls): its id is its own. */
static int alive(int pidfd)
{
	if (pidfd < 0)
		return 1; /* no pidfd (a kernel before 6.9): only a notification from it ends a pending call */
	return syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) == 0 || errno == EPERM;
}

static void drop_entry(struct idc_entry *e)
{
	if (e->tid && e->pidfd >= 0)
		close(e->pidfd);
	e->tid = 0;
	e->pidfd = -1;
}

static void drop_tid(struct idcache *c, pid_t tid)
{
	for (int i = 0; i < IDC_ENTRIES; i++)
		if (c->e[i].tid == tid)
			drop_entry(&c->e[i]);
}

static void drop_all(struct idcache *c)
{
	for (int i = 0; i < IDC_ENTRIES; i++)
		drop_entry(&c->e[i]);
}

static void drop_pending(struct idcache *c, unsigned i)
{
	if (c->p[i].pidfd >= 0)
		close(c->p[i].pidfd);
	c->p[i] = c->p[--c->npending];
}

static void turn_off(struct idcache *c)
{
	drop_all(c);
	while (c->npending)
		drop_pending(c, 0);
	c->off = 1;
}

/* `tid` has sent a call that changes other threads: until it comes back or is gone, no entry is made. */
static void add_pending(struct idcache *c, pid_t tid)
{
	drop_all(c);
	int pidfd = pidfd_of(tid, PIDFD_THREAD);
	if (pidfd < 0 && errno == ESRCH)
		return; /* gone: its call will not run */
	if (c->npending == IDC_PENDING) {
		if (pidfd >= 0)
			close(pidfd);
		turn_off(c);
		return;
	}
	c->p[c->npending++] = (struct idc_pending){ .tid = tid, .pidfd = pidfd };
}

/* pidfd_open without PIDFD_THREAD takes only a thread-group leader. */
static int is_leader(pid_t tid)
{
	int fd = pidfd_of(tid, 0);
	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

void idc_note(struct idcache *c, const struct seccomp_notif *n, uint8_t track)
{
	if (!c->on || c->off)
		return;
	pid_t tid = (pid_t)n->pid;
	if (tid <= 0 && track != IDC_NONE) {
		turn_off(c); /* a caller vjail's PID namespace does not see: whose identity it changes is unknown */
		return;
	}
	/* A thread's next call means its last one is over. */
	for (unsigned i = c->npending; i-- > 0;)
		if (c->p[i].tid == tid)
			drop_pending(c, i);
	switch (track) {
	case IDC_OWN:
		drop_tid(c, tid);
		break;
	case IDC_EXEC:
		/* A leader keeps its id; the others die with their own. Another thread takes the leader's id. */
		if (is_leader(tid)) {
			drop_tid(c, tid);
			break;
		}
		add_pending(c, tid);
		break;
	case IDC_OTHERS:
		add_pending(c, tid);
		break;
	default:
		break;
	}
}

const struct of_identity *idc_find(struct idcache *c, pid_t tid)
{
	if (!c->on || c->off || tid <= 0) /* 0: a caller vjail's PID namespace does not see */
		return NULL;
	for (int i = 0; i < IDC_ENTRIES; i++) {
		struct idc_entry *e = &c->e[i];
		if (e->tid != tid)
			continue;
		if (!alive(e->pidfd)) {
			drop_entry(e);
			return NULL;
		}
		e->used = ++c->clock;
		return &e->id;
	}
	return NULL;
}

int idc_begin(struct idcache *c, pid_t tid)
{
	if (!c->on || c->off || tid <= 0)
		return -1;
	for (unsigned i = c->npending; i-- > 0;)
		if (c->p[i].pidfd >= 0 && !alive(c->p[i].pidfd))
			drop_pending(c, i);
	if (c->npending)
		return -1;
	return pidfd_of(tid, PIDFD_THREAD);
}

void idc_store(struct idcache *c, pid_t tid, int pidfd, const struct of_identity *id)
{
	/* Its own old entry, else a free one, else the least recently used. */
	struct idc_entry *slot = &c->e[0];
	for (int i = 0; i < IDC_ENTRIES; i++) {
		struct idc_entry *e = &c->e[i];
		if (e->tid == tid) {
			slot = e;
			break;
		}
		if (slot->tid && (!e->tid || e->used < slot->used))
			slot = e;
	}
	drop_entry(slot);
	slot->tid = tid;
	slot->pidfd = pidfd;
	slot->used = ++c->clock;
	slot->id = *id;
}

void idc_destroy(struct idcache *c)
{
	drop_all(c);
	while (c->npending)
		drop_pending(c, 0);
}
