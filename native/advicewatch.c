/* Calls that change memory advice, for checkpoints that read it early (advicewatch.h). */
#include "advicewatch.h"

#include <errno.h>
#include <linux/audit.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum { AW_NONE, AW_CHANGE, AW_RING };

/* MADV_DONTFORK (10) to MADV_KEEPONFORK (19): the advice that sets or clears a VmFlag. */
static int changes_advice(uint64_t advice)
{
	return advice >= 10 && advice <= 19;
}

#define MAP_LOCKED_FLAG 0x2000

static int kind_x86_64(int nr, const uint64_t *a)
{
	switch (nr) {
	case 28: /* madvise */
		return changes_advice(a[2]) ? AW_CHANGE : AW_NONE;
	case 440: /* process_madvise */
		return changes_advice(a[3]) ? AW_CHANGE : AW_NONE;
	case 9: /* mmap */
		return a[3] & MAP_LOCKED_FLAG ? AW_CHANGE : AW_NONE;
	case 149: /* mlock */
	case 150: /* munlock */
	case 151: /* mlockall */
	case 152: /* munlockall */
	case 325: /* mlock2 */
		return AW_CHANGE;
	case 425: /* io_uring_setup */
		return AW_RING;
	default:
		return AW_NONE;
	}
}

static int kind_i386(int nr, const uint64_t *a)
{
	switch (nr) {
	case 219: /* madvise */
		return changes_advice(a[2]) ? AW_CHANGE : AW_NONE;
	case 440: /* process_madvise */
		return changes_advice(a[3]) ? AW_CHANGE : AW_NONE;
	case 192: /* mmap2 */
		return a[3] & MAP_LOCKED_FLAG ? AW_CHANGE : AW_NONE;
	case 90:  /* old mmap: its arguments are in memory, so every one counts */
	case 150: /* mlock */
	case 151: /* munlock */
	case 152: /* mlockall */
	case 153: /* munlockall */
	case 376: /* mlock2 */
		return AW_CHANGE;
	case 425: /* io_uring_setup */
		return AW_RING;
	default:
		return AW_NONE;
	}
}

int aw_init(struct advice_watch *w)
{
	w->fd = -1;
	w->m = NULL;
	w->npending = 0;
	int fd = memfd_create(AW_NAME, MFD_CLOEXEC);
	if (fd < 0)
		return errno;
	if (ftruncate(fd, sizeof(struct aw_shared))) {
		int err = errno;
		close(fd);
		return err;
	}
	void *m = mmap(NULL, sizeof(struct aw_shared), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		int err = errno;
		close(fd);
		return err;
	}
	w->fd = fd;
	w->m = m;
	w->m->version = AW_VERSION;
	atomic_store(&w->m->gen, 0);
	/* Last: a reader takes the memfd as ours only with the magic in place. */
	__atomic_store_n(&w->m->magic, AW_MAGIC, __ATOMIC_RELEASE);
	return 0;
}

/* The thread's pending slot ends: it made another call, so the one before has returned. */
static void clear_pending(struct advice_watch *w, int32_t tid)
{
	for (int i = 0; i < AW_PENDING && w->npending; i++)
		if (atomic_load_explicit(&w->m->pending[i], memory_order_relaxed) == tid) {
			atomic_store(&w->m->pending[i], 0);
			w->npending--;
		}
}

/* Slots of threads that are gone, freed when every slot is taken. */
static void sweep_gone(struct advice_watch *w)
{
	char path[32];
	for (int i = 0; i < AW_PENDING; i++) {
		int32_t tid = atomic_load_explicit(&w->m->pending[i], memory_order_relaxed);
		snprintf(path, sizeof path, "/proc/%d", (int)tid);
		if (tid > 0 && access(path, F_OK) && errno == ENOENT) {
			atomic_store(&w->m->pending[i], 0);
			w->npending--;
		}
	}
}

static void add_pending(struct advice_watch *w, int32_t tid)
{
	if (w->npending == AW_PENDING)
		sweep_gone(w);
	for (int i = 0; i < AW_PENDING; i++)
		if (atomic_load_explicit(&w->m->pending[i], memory_order_relaxed) == 0) {
			atomic_store(&w->m->pending[i], tid);
			w->npending++;
			return;
		}
	atomic_store(&w->m->overflow, 1);
}

void aw_note(struct advice_watch *w, const struct seccomp_notif *n)
{
	if (!w->m)
		return;
	int32_t tid = (int32_t)n->pid;
	int kind = n->data.arch == AUDIT_ARCH_X86_64 ? kind_x86_64(n->data.nr, (const uint64_t *)n->data.args)
		   : n->data.arch == AUDIT_ARCH_I386 ? kind_i386(n->data.nr, (const uint64_t *)n->data.args)
						      : AW_NONE;
	if (w->npending)
		clear_pending(w, tid);
	if (kind == AW_NONE)
		return;
	if (kind == AW_RING || tid <= 0) /* a ring, or a caller vjail's PID namespace does not see */
		atomic_store(&w->m->untrusted, 1);
	else
		add_pending(w, tid);
	/* After the mark: a reader that reads the count, then the marks, sees the mark of every call
	 * the count includes (unless that thread's next call has ended it). */
	atomic_fetch_add(&w->m->gen, 1);
}

void aw_release(struct advice_watch *w)
{
	if (w->m)
		munmap(w->m, sizeof(struct aw_shared));
	if (w->fd >= 0)
		close(w->fd);
	w->m = NULL;
	w->fd = -1;
	w->npending = 0;
}
