/*
 * Lazy restore: the pages of a restored process's private anonymous
 * mappings arrive when it touches them (userfaultfd MISSING faults,
 * answered with UFFDIO_COPY) and from a background prefetch, on one native
 * thread per restored process, so that faults are answered whatever Node's
 * event loop is doing.
 *
 * Page files are read in chunks of the image's chunk size; each chunk's
 * sha256 is checked before any of its pages is placed. A chunk that does not
 * match is never placed: the faulting threads stay blocked, the process is
 * killed, and the error is handed to JavaScript in one line. A file without
 * chunk sums has been hashed whole before the workload runs (JavaScript's
 * side).
 *
 * Hashing costs about twice what placing does, so the prefetch reads and
 * checks chunks on two threads: a reader thread fills buffers with checked
 * chunks ahead of the serving thread, which places them, and which also
 * reads and checks chunks of its own whenever none is ready and no fault
 * waits. Each claims chunks (`claim`) two at a time, after the last fault's
 * if it can, and hashes the two together (sha256pair.c: where the CPU has
 * the SHA extensions, two take little more time than one); no chunk is read
 * twice. A fault on a chunk the reader is checking waits for it (a bounded
 * while, then reads it itself). A chunk is placed only from the buffer it
 * was checked in: what the process sees is exactly what was hashed,
 * whatever happens to the file meanwhile.
 *
 * Fork (UFFD_FEATURE_EVENT_FORK): the kernel hands us a new userfaultfd for
 * the child's memory, which starts with the parent's state at the fork: the
 * pages already placed are the child's copies, the rest are served to it as
 * to the parent. mremap, munmap and madvise(MADV_DONTNEED) are followed
 * (EVENT_REMAP, EVENT_UNMAP, EVENT_REMOVE): a page the program dropped reads
 * zero, as it would have without us. Once every chunk is placed in a
 * process, its ranges are unregistered and its userfaultfd closed: the
 * memory is ordinary again (a later checkpoint reads it as any other).
 *
 * Every wait is bounded: poll waits at most 100 ms at a time, and a memory
 * map that keeps changing under us (EAGAIN) is given up on after a bound.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "lazypages.h"
#include "napi_util.h"
#include "sha256pair.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

#define PAGE 4096UL
#define MAX_CTX 256
/* Consecutive EAGAINs (the memory map changing under a copy) before we give up. */
#define MAX_AGAIN 100000
#define IDLE_POLL_MS 100
/* After a failure, how long the userfaultfds are held open at most while the jail is killed. */
#define FAILED_HOLD_MS 10000
/* Buffers of checked chunks the reader thread may be ahead by. */
#define NSLOT 16
/* How long a fault waits for the reader to finish checking its chunk before reading it itself. */
#define CLAIM_WAIT_MS 20

/* One mapping's page file: immutable once started, shared by every process forked from the first. */
/* Pages first..first+count-1 of a mapping, stored from file page `file` on. */
struct run {
	uint32_t first, count, file;
};

struct range {
	uint64_t start;   /* where the image had it */
	uint32_t npages;  /* pages of the mapping */
	int fd;           /* its page file */
	uint32_t nfile;   /* pages in the file */
	uint32_t chunk;   /* pages per chunk */
	uint32_t nchunks;
	const uint8_t *sums; /* nchunks × 32 (JavaScript's buffer, held by sums_ref), or NULL: verified whole already */
	napi_ref sums_ref;
	/*
	 * The file's runs of mapping pages, in file order (file ascending), and
	 * the same sorted by mapping page: searched, not expanded into tables of
	 * a word per page (at 1 GiB 2 MiB of fresh memory, whose first touch costs
	 * milliseconds where page faults are dear).
	 */
	struct run *runs, *by_page;
	uint32_t nruns;
	uint8_t *claim;   /* per chunk, under lazy.mu: CH_* */
};

/*
 * Of n runs sorted by one of their fields (at byte `key` of struct run), the
 * last whose field is at most x; the first if none is.
 */
static const struct run *last_at_most(const struct run *runs, uint32_t n, size_t key, uint32_t x)
{
	uint32_t lo = 0, hi = n;
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		uint32_t k;
		memcpy(&k, (const char *)&runs[mid] + key, sizeof k);
		if (k <= x)
			lo = mid;
		else
			hi = mid;
	}
	return &runs[lo];
}

/* The mapping page of file page fp (< nfile): in the last run that starts at or before it in the file. */
static uint32_t page_of(const struct range *R, uint32_t fp)
{
	const struct run *u = last_at_most(R->runs, R->nruns, offsetof(struct run, file), fp);
	return u->first + (fp - u->file);
}

/* The chunk holding mapping page `page`, or -1 where the image has no data for it. */
static int32_t chunk_of(const struct range *R, uint32_t page)
{
	if (R->nruns == 0 || R->by_page[0].first > page)
		return -1;
	const struct run *u = last_at_most(R->by_page, R->nruns, offsetof(struct run, first), page);
	if (page - u->first >= u->count)
		return -1;
	return (int32_t)((u->file + (page - u->first)) / R->chunk);
}

static int by_first(const void *a, const void *b)
{
	uint32_t x = ((const struct run *)a)->first, y = ((const struct run *)b)->first;
	return x < y ? -1 : x > y;
}

/* Who has a chunk: nobody yet, the reader (checking it, or checked in a slot), or the serving thread. */
enum { CH_FREE = 0, CH_READING, CH_READY, CH_TAKEN };
enum { SLOT_EMPTY = 0, SLOT_FILLING, SLOT_READY };

/* A buffer of the reader thread: chunk `chunk` of range `range`, checked once READY. */
struct slot {
	int state;
	uint32_t range, chunk;
	uint8_t *buf;
	int pinned; /* the serving thread is placing from it (and may answer faults meanwhile): not let go */
};

/* Pages [first, first + count) of a range, now at addr. */
struct view {
	uint64_t addr;
	uint32_t range;
	uint32_t first;
	uint32_t count;
};

/* One process's memory (one mm): its userfaultfd and what has been placed in it. */
struct ctx {
	int uffd;
	struct view *views;
	size_t nviews, capviews;
	uint8_t **settled;    /* per range, per page: placed, or dropped by the program */
	uint8_t **chunk_done; /* per range, per chunk */
	uint32_t *cursor;     /* per range: prefetch position */
	int finished;
};

struct lazy {
	struct range *ranges;
	uint32_t nranges;
	struct ctx *ctx[MAX_CTX];
	int nctx;
	pid_t pid;
	int stopfd;
	/* Set once the processes run: before, only faults are served (the restore's own calls), and the driver keeps the CPU. */
	volatile int prefetch;
	volatile int stopping;
	pthread_t thread;
	int started;
	napi_threadsafe_function done;
	uint8_t *buf;  /* chunks read on a fault: two of maxchunk pages */
	uint8_t *pbuf; /* chunks the serving thread prefetches itself: two */
	uint32_t maxchunk;
	int pair; /* vj_sha256_pair can be used */
	const EVP_MD *sha;
	/* The reader thread; mu guards slots, claims, the claim cursor and quit; cv signals their changes. */
	pthread_t reader;
	int reader_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int quit;
	uint32_t next_range, next_chunk;
	/* Where the last fault was, plus one chunk: read from there on first (a process tends to go on where it was). */
	int hint;
	uint32_t hint_range, hint_chunk;
	struct slot slots[NSLOT];
	int readyfd; /* eventfd: a slot became ready, or the reader ended */
	/* error is written once, under errmu, then failed is set. */
	pthread_mutex_t errmu;
	int failed;
	char error[512];
	/* stats */
	uint64_t faults, chunks_on_fault, chunks_prefetched, bytes, forks;
	double start_ms, end_ms;
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void fail(struct lazy *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct lazy *l, const char *fmt, ...)
{
	pthread_mutex_lock(&l->errmu);
	if (!l->error[0]) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(l->error, sizeof l->error, fmt, ap);
		va_end(ap);
		/* The process must not run on memory we could not give it. */
		kill(l->pid, SIGKILL);
		__atomic_store_n(&l->failed, 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&l->errmu);
}

static int failed(struct lazy *l)
{
	return __atomic_load_n(&l->failed, __ATOMIC_ACQUIRE);
}

static struct ctx *ctx_new(struct lazy *l, int uffd)
{
	struct ctx *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->uffd = uffd;
	c->settled = calloc(l->nranges, sizeof *c->settled);
	c->chunk_done = calloc(l->nranges, sizeof *c->chunk_done);
	c->cursor = calloc(l->nranges, sizeof *c->cursor);
	if (!c->settled || !c->chunk_done || !c->cursor)
		return NULL;
	for (uint32_t r = 0; r < l->nranges; r++) {
		c->settled[r] = calloc(l->ranges[r].npages ? l->ranges[r].npages : 1, 1);
		c->chunk_done[r] = calloc(l->ranges[r].nchunks ? l->ranges[r].nchunks : 1, 1);
		if (!c->settled[r] || !c->chunk_done[r])
			return NULL;
	}
	return c;
}

static void ctx_free(struct lazy *l, struct ctx *c)
{
	if (!c)
		return;
	for (uint32_t r = 0; r < l->nranges; r++) {
		if (c->settled)
			free(c->settled[r]);
		if (c->chunk_done)
			free(c->chunk_done[r]);
	}
	free(c->settled);
	free(c->chunk_done);
	free(c->cursor);
	free(c->views);
	free(c);
}

static int view_add(struct ctx *c, struct view v)
{
	if (v.count == 0)
		return 0;
	if (c->nviews == c->capviews) {
		size_t cap = c->capviews ? c->capviews * 2 : 8;
		struct view *nv = realloc(c->views, cap * sizeof *nv);
		if (!nv)
			return -1;
		c->views = nv;
		c->capviews = cap;
	}
	c->views[c->nviews++] = v;
	return 0;
}

/*
 * The part of every view inside [start, end) is cut out: moved by `delta`
 * (mremap), or dropped, its pages settled (munmap, MADV_DONTNEED: they read
 * zero from now on; with `keep`, the view stays and only its pages settle).
 */
static int views_cut(struct ctx *c, uint64_t start, uint64_t end, int move, uint64_t to, int keep)
{
	size_t n = c->nviews;
	for (size_t i = 0; i < n; i++) {
		struct view v = c->views[i];
		uint64_t vend = v.addr + (uint64_t)v.count * PAGE;
		if (v.count == 0 || vend <= start || v.addr >= end)
			continue;
		uint64_t a = v.addr > start ? v.addr : start;
		uint64_t b = vend < end ? vend : end;
		uint32_t skip = (uint32_t)((a - v.addr) / PAGE), mid = (uint32_t)((b - a) / PAGE);
		if (!move && keep)
			continue; /* settled by the caller */
		c->views[i].count = 0;
		struct view before = { v.addr, v.range, v.first, skip };
		struct view after = { b, v.range, v.first + skip + mid, v.count - skip - mid };
		struct view moved = { to + (a - start), v.range, v.first + skip, mid };
		if (view_add(c, before) || view_add(c, after) || (move && view_add(c, moved)))
			return -1;
	}
	/* Compact. */
	size_t k = 0;
	for (size_t i = 0; i < c->nviews; i++)
		if (c->views[i].count)
			c->views[k++] = c->views[i];
	c->nviews = k;
	return 0;
}

static void settle_addr(struct lazy *l, struct ctx *c, uint64_t start, uint64_t end)
{
	(void)l;
	for (size_t i = 0; i < c->nviews; i++) {
		struct view *v = &c->views[i];
		uint64_t vend = v->addr + (uint64_t)v->count * PAGE;
		if (vend <= start || v->addr >= end)
			continue;
		uint64_t a = v->addr > start ? v->addr : start;
		uint64_t b = vend < end ? vend : end;
		for (uint64_t x = a; x < b; x += PAGE)
			c->settled[v->range][v->first + (x - v->addr) / PAGE] = 1;
	}
}

static struct view *view_of_page(struct ctx *c, uint32_t range, uint32_t page)
{
	for (size_t i = 0; i < c->nviews; i++) {
		struct view *v = &c->views[i];
		if (v->range == range && page >= v->first && page < v->first + v->count)
			return v;
	}
	return NULL;
}

static struct view *view_of_addr(struct ctx *c, uint64_t addr)
{
	for (size_t i = 0; i < c->nviews; i++) {
		struct view *v = &c->views[i];
		if (addr >= v->addr && addr < v->addr + (uint64_t)v->count * PAGE)
			return v;
	}
	return NULL;
}

enum { OK = 0, AGAIN = 1, GONE = 2, COMPLETE = 3, FAILED = -1 };

/* Copy `count` pages of data to addr; EEXIST pages are skipped. */
static int copy_pages(struct lazy *l, struct ctx *c, uint64_t addr, const uint8_t *src, uint64_t count)
{
	uint64_t done = 0;
	while (done < count * PAGE) {
		struct uffdio_copy cp = { .dst = addr + done, .src = (uint64_t)(uintptr_t)(src + done), .len = count * PAGE - done, .mode = 0 };
		if (ioctl(c->uffd, UFFDIO_COPY, &cp) == 0) {
			done += (uint64_t)cp.copy;
			continue;
		}
		if (cp.copy > 0)
			done += (uint64_t)cp.copy;
		if (errno == EEXIST) {
			done += PAGE; /* placed already: never overwritten */
			continue;
		}
		if (errno == EAGAIN)
			return AGAIN;
		if (errno == ESRCH)
			return GONE;
		if (errno == ENOENT || errno == EINVAL)
			return OK; /* the range is no longer registered (unmapped, replaced): nothing to place */
		fail(l, "lazy restore: UFFDIO_COPY at 0x%llx failed: %s", (unsigned long long)(addr + done), strerror(errno));
		return FAILED;
	}
	l->bytes += count * PAGE;
	return OK;
}

/* A chunk to read and check: chunk k of range r, into buf. */
struct want {
	uint32_t r, k;
	uint8_t *buf;
};

/* Bytes of chunk k of R (the last one may be short). */
static size_t chunk_len(const struct range *R, uint32_t k)
{
	uint32_t fp0 = k * R->chunk;
	return (size_t)(R->nfile - fp0 < R->chunk ? R->nfile - fp0 : R->chunk) * PAGE;
}

/*
 * Read n chunks (1 or 2) and check each against its sha256: two of the same
 * size at once where the CPU has the SHA extensions (sha256pair.c). Either
 * thread: nothing shared is written but on failure.
 */
static int read_chunks(struct lazy *l, const struct want *w, int n)
{
	uint8_t md[2][32];
	for (int i = 0; i < n; i++) {
		struct range *R = &l->ranges[w[i].r];
		size_t len = chunk_len(R, w[i].k);
		off_t at = (off_t)w[i].k * R->chunk * (off_t)PAGE;
		for (size_t off = 0; off < len;) {
			ssize_t got = pread(R->fd, w[i].buf + off, len - off, at + (off_t)off);
			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0) {
				fail(l, "lazy restore: page data of the mapping at 0x%llx could not be read (%s); the process was killed",
					(unsigned long long)R->start, got < 0 ? strerror(errno) : "the file ended early");
				return FAILED;
			}
			off += (size_t)got;
		}
	}
	const struct range *R0 = &l->ranges[w[0].r], *R1 = n == 2 ? &l->ranges[w[1].r] : NULL;
	int paired = l->pair && R1 && R0->sums && R1->sums && chunk_len(R0, w[0].k) == chunk_len(R1, w[1].k);
	if (paired)
		vj_sha256_pair((const uint8_t *const[2]){ w[0].buf, w[1].buf }, chunk_len(R0, w[0].k), md);
	for (int i = 0; i < n; i++) {
		struct range *R = &l->ranges[w[i].r];
		if (!R->sums)
			continue; /* hashed whole before anything ran */
		unsigned int mdlen = 32;
		if (!paired && (!EVP_Digest(w[i].buf, chunk_len(R, w[i].k), md[i], &mdlen, l->sha, NULL) || mdlen != 32)) {
			fail(l, "lazy restore: sha256 failed");
			return FAILED;
		}
		if (memcmp(md[i], R->sums + (size_t)w[i].k * 32, 32) != 0) {
			fail(l, "the image is damaged: the page data of the mapping at 0x%llx (chunk %u) does not match its checksum; the restored process was killed before using it",
				(unsigned long long)R->start, w[i].k);
			return FAILED;
		}
	}
	return OK;
}

/* Place the pages of chunk k of range r (checked, in buf) that are neither placed nor dropped in c. */
static int place_chunk(struct lazy *l, struct ctx *c, uint32_t r, uint32_t k, const uint8_t *buf)
{
	struct range *R = &l->ranges[r];
	if (c->chunk_done[r][k])
		return OK;
	uint32_t fp0 = k * R->chunk;
	uint32_t nfp = R->nfile - fp0 < R->chunk ? R->nfile - fp0 : R->chunk;
	/* Runs of consecutive file pages that are consecutive mapping pages, unsettled, within one view. */
	for (uint32_t i = 0; i < nfp;) {
		uint32_t page = page_of(R, fp0 + i);
		struct view *v = c->settled[r][page] ? NULL : view_of_page(c, r, page);
		if (!v) {
			c->settled[r][page] = 1;
			i++;
			continue;
		}
		uint32_t j = i + 1;
		while (j < nfp && page_of(R, fp0 + j) == page + (j - i) && !c->settled[r][page + (j - i)] && page + (j - i) < v->first + v->count)
			j++;
		int rc = copy_pages(l, c, v->addr + (uint64_t)(page - v->first) * PAGE, buf + (size_t)i * PAGE, j - i);
		if (rc != OK)
			return rc;
		for (uint32_t x = i; x < j; x++)
			c->settled[r][page + (x - i)] = 1;
		i = j;
	}
	c->chunk_done[r][k] = 1;
	return OK;
}

/* Read, check and place chunk k of range r in c, on the serving thread. */
static int load_chunk(struct lazy *l, struct ctx *c, uint32_t r, uint32_t k)
{
	if (c->chunk_done[r][k])
		return OK;
	struct want w = { r, k, l->buf };
	int rc = read_chunks(l, &w, 1);
	return rc == OK ? place_chunk(l, c, r, k, l->buf) : rc;
}

/* The next chunk nobody has claimed (under mu): after the last fault's, else in file order; 0 when there is none. */
static int next_free(struct lazy *l, uint32_t *r, uint32_t *k)
{
	if (l->hint) {
		struct range *R = &l->ranges[l->hint_range];
		while (l->hint_chunk < R->nchunks && R->claim[l->hint_chunk] != CH_FREE)
			l->hint_chunk++;
		if (l->hint_chunk < R->nchunks) {
			*r = l->hint_range;
			*k = l->hint_chunk++;
			return 1;
		}
		l->hint = 0;
	}
	for (; l->next_range < l->nranges; l->next_range++, l->next_chunk = 0) {
		struct range *R = &l->ranges[l->next_range];
		while (l->next_chunk < R->nchunks && R->claim[l->next_chunk] != CH_FREE)
			l->next_chunk++;
		if (l->next_chunk < R->nchunks) {
			*r = l->next_range;
			*k = l->next_chunk++;
			return 1;
		}
	}
	return 0;
}

static struct slot *slot_of(struct lazy *l, uint32_t r, uint32_t k)
{
	for (int i = 0; i < NSLOT; i++)
		if (l->slots[i].state == SLOT_READY && l->slots[i].range == r && l->slots[i].chunk == k)
			return &l->slots[i];
	return NULL;
}

/* Let go of a slot: the reader may fill it again. A process still without its chunk gets it from complete_step. */
static void release_slot(struct lazy *l, struct slot *s)
{
	pthread_mutex_lock(&l->mu);
	l->ranges[s->range].claim[s->chunk] = CH_TAKEN;
	s->state = SLOT_EMPTY;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

/* Let go of a slot once its chunk is in every process, so that the reader can go on. */
static void release_if_placed(struct lazy *l, struct slot *s)
{
	if (s->pinned)
		return;
	for (int i = 0; i < l->nctx; i++)
		if (!l->ctx[i]->finished && !l->ctx[i]->chunk_done[s->range][s->chunk])
			return;
	release_slot(l, s);
}

static void timed_wait(struct lazy *l, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += (long)ms * 1000000L;
	ts.tv_sec += ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	pthread_cond_timedwait(&l->cv, &l->mu, &ts);
}

/*
 * The reader thread: once the prefetch starts, claim chunks (next_free),
 * read and check each into a free slot, and tell the serving thread. Ends
 * when every chunk is claimed, on a failure, or when told to quit.
 */
static void *reader(void *arg)
{
	struct lazy *l = arg;
	pthread_mutex_lock(&l->mu);
	while (!l->quit && !failed(l)) {
		/* Two chunks at a time (hashed together), or one if that is all there is. */
		struct slot *s[2];
		int free = 0;
		for (int i = 0; i < NSLOT && free < 2; i++)
			if (l->slots[i].state == SLOT_EMPTY)
				s[free++] = &l->slots[i];
		if (!__atomic_load_n(&l->prefetch, __ATOMIC_ACQUIRE) || free < 2) {
			timed_wait(l, IDLE_POLL_MS); /* woken by lazy_signal or a slot let go */
			continue;
		}
		struct want w[2];
		int n = 0;
		while (n < 2 && next_free(l, &w[n].r, &w[n].k)) {
			l->ranges[w[n].r].claim[w[n].k] = CH_READING;
			s[n]->state = SLOT_FILLING;
			s[n]->range = w[n].r;
			s[n]->chunk = w[n].k;
			w[n].buf = s[n]->buf;
			n++;
		}
		if (n == 0)
			break;
		pthread_mutex_unlock(&l->mu);
		int rc = read_chunks(l, w, n);
		pthread_mutex_lock(&l->mu);
		for (int i = 0; i < n; i++) {
			s[i]->state = rc == OK ? SLOT_READY : SLOT_EMPTY;
			l->ranges[w[i].r].claim[w[i].k] = rc == OK ? CH_READY : CH_TAKEN;
		}
		pthread_cond_broadcast(&l->cv);
		uint64_t one = 1;
		if (write(l->readyfd, &one, sizeof one) < 0) {
			/* An eventfd counter does not overflow here: nothing to do. */
		}
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

/*
 * Chunk k of range r for c, on a fault: from the reader's slot if it has
 * checked it, waiting a bounded while if it is checking it; else read here.
 */
static int fault_chunk(struct lazy *l, struct ctx *c, uint32_t r, uint32_t k)
{
	struct range *R = &l->ranges[r];
	pthread_mutex_lock(&l->mu);
	l->hint = 1;
	l->hint_range = r;
	l->hint_chunk = k + 1;
	double until = now_ms() + CLAIM_WAIT_MS;
	while (R->claim[k] == CH_READING && now_ms() < until && !failed(l))
		timed_wait(l, CLAIM_WAIT_MS);
	struct slot *s = R->claim[k] == CH_READY ? slot_of(l, r, k) : NULL;
	if (R->claim[k] == CH_FREE) {
		/* Read here, and the next chunk nobody has (after this one) with it: hashed together, it costs little more. */
		R->claim[k] = CH_TAKEN;
		struct want w[2] = { { r, k, l->buf } };
		int n = 1;
		if (next_free(l, &w[1].r, &w[1].k)) {
			l->ranges[w[1].r].claim[w[1].k] = CH_TAKEN;
			w[1].buf = l->buf + (size_t)l->maxchunk * PAGE;
			n = 2;
		}
		pthread_mutex_unlock(&l->mu);
		int rc = read_chunks(l, w, n);
		if (rc == OK)
			rc = place_chunk(l, c, r, k, l->buf);
		/* The other one in this process only (others get it from complete_step); not placed now, it is later. */
		if (rc == OK && n == 2 && place_chunk(l, c, w[1].r, w[1].k, w[1].buf) == FAILED)
			rc = FAILED;
		return rc;
	}
	pthread_mutex_unlock(&l->mu);
	if (!s)
		return load_chunk(l, c, r, k);
	/* A READY slot is let go only by this thread: it stays valid. */
	int rc = place_chunk(l, c, r, k, s->buf);
	if (rc == OK)
		release_if_placed(l, s);
	return rc;
}

static int zero_page(struct lazy *l, struct ctx *c, uint64_t addr)
{
	struct uffdio_zeropage z = { .range = { addr, PAGE }, .mode = 0 };
	if (ioctl(c->uffd, UFFDIO_ZEROPAGE, &z) == 0)
		return OK;
	if (errno == EEXIST) {
		struct uffdio_range w = { addr, PAGE };
		ioctl(c->uffd, UFFDIO_WAKE, &w);
		return OK;
	}
	if (errno == EAGAIN)
		return AGAIN;
	if (errno == ESRCH)
		return GONE;
	if (errno == ENOENT || errno == EINVAL)
		return OK;
	fail(l, "lazy restore: UFFDIO_ZEROPAGE at 0x%llx failed: %s", (unsigned long long)addr, strerror(errno));
	return FAILED;
}

static int serve_fault(struct lazy *l, struct ctx *c, uint64_t addr)
{
	addr &= ~(PAGE - 1);
	l->faults++;
	struct view *v = view_of_addr(c, addr);
	if (v) {
		uint32_t r = v->range, page = v->first + (uint32_t)((addr - v->addr) / PAGE);
		int32_t k = chunk_of(&l->ranges[r], page);
		if (k >= 0 && !c->chunk_done[r][k]) {
			l->chunks_on_fault++;
			int rc = fault_chunk(l, c, r, (uint32_t)k);
			if (rc != OK)
				return rc;
		}
	}
	/* A page the image has no data for, or one the program dropped: zero, as without us. Placed already: just wake. */
	return zero_page(l, c, addr);
}

static void ctx_finish(struct lazy *l, struct ctx *c)
{
	(void)l;
	for (size_t i = 0; i < c->nviews; i++) {
		struct uffdio_range rg = { c->views[i].addr, (uint64_t)c->views[i].count * PAGE };
		ioctl(c->uffd, UFFDIO_UNREGISTER, &rg); /* a range gone or changed meanwhile: closing unregisters it too */
	}
	close(c->uffd);
	c->uffd = -1;
	c->finished = 1;
}

/* A fault or an event waiting on c's queue; returns OK, GONE (its memory is gone), or FAILED. */
static int handle_msg(struct lazy *l, struct ctx *c, struct uffd_msg *m, uint64_t *pending, int *npending)
{
	switch (m->event) {
	case UFFD_EVENT_PAGEFAULT:
		pending[(*npending)++] = m->arg.pagefault.address;
		return OK;
	case UFFD_EVENT_FORK: {
		int fd = (int)m->arg.fork.ufd;
		if (l->nctx == MAX_CTX) {
			close(fd);
			fail(l, "lazy restore: more than %d processes forked before their memory was in place; the process was killed", MAX_CTX);
			return FAILED;
		}
		struct ctx *n = ctx_new(l, fd);
		if (!n) {
			close(fd);
			fail(l, "lazy restore: out of memory");
			return FAILED;
		}
		for (size_t i = 0; i < c->nviews; i++)
			if (view_add(n, c->views[i])) {
				ctx_free(l, n);
				close(fd);
				fail(l, "lazy restore: out of memory");
				return FAILED;
			}
		for (uint32_t r = 0; r < l->nranges; r++) {
			memcpy(n->settled[r], c->settled[r], l->ranges[r].npages);
			memcpy(n->chunk_done[r], c->chunk_done[r], l->ranges[r].nchunks);
			n->cursor[r] = c->cursor[r];
		}
		fcntl(fd, F_SETFL, O_NONBLOCK);
		l->ctx[l->nctx++] = n;
		l->forks++;
		return OK;
	}
	case UFFD_EVENT_REMAP:
		if (views_cut(c, m->arg.remap.from, m->arg.remap.from + m->arg.remap.len, 1, m->arg.remap.to, 0)) {
			fail(l, "lazy restore: out of memory");
			return FAILED;
		}
		return OK;
	case UFFD_EVENT_REMOVE:
		settle_addr(l, c, m->arg.remove.start, m->arg.remove.end);
		return OK;
	case UFFD_EVENT_UNMAP:
		settle_addr(l, c, m->arg.remove.start, m->arg.remove.end);
		if (views_cut(c, m->arg.remove.start, m->arg.remove.end, 0, 0, 0)) {
			fail(l, "lazy restore: out of memory");
			return FAILED;
		}
		return OK;
	}
	return OK;
}

/* Read c's queue dry and answer its faults. */
static int drain(struct lazy *l, struct ctx *c)
{
	for (int again = 0; again < MAX_AGAIN;) {
		struct uffd_msg msgs[32];
		uint64_t pending[32];
		int npending = 0;
		ssize_t n = read(c->uffd, msgs, sizeof msgs);
		if (n < 0 && errno == EAGAIN)
			return OK;
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return GONE;
		for (size_t i = 0; i < (size_t)n / sizeof msgs[0]; i++) {
			int rc = handle_msg(l, c, &msgs[i], pending, &npending);
			if (rc != OK)
				return rc;
		}
		for (int i = 0; i < npending; i++) {
			int rc = serve_fault(l, c, pending[i]);
			if (rc == AGAIN) {
				/* The map is changing: its event is queued; read it, then retry this fault. */
				again++;
				struct uffd_msg ev;
				ssize_t k = read(c->uffd, &ev, sizeof ev);
				if (k == sizeof ev) {
					uint64_t more[1];
					int nmore = 0;
					rc = handle_msg(l, c, &ev, more, &nmore);
					if (rc != OK)
						return rc;
					if (nmore && npending < 32)
						pending[npending++] = more[0];
				}
				i--;
				continue;
			}
			if (rc != OK)
				return rc;
		}
	}
	fail(l, "lazy restore: the memory map kept changing under the page copies; the process was killed");
	return FAILED;
}

/* Place the next chunk not placed yet in c; returns OK, COMPLETE when every chunk is, or AGAIN, GONE, FAILED. */
static int prefetch_one(struct lazy *l, struct ctx *c)
{
	for (uint32_t r = 0; r < l->nranges; r++) {
		struct range *R = &l->ranges[r];
		while (c->cursor[r] < R->nchunks && c->chunk_done[r][c->cursor[r]])
			c->cursor[r]++;
		if (c->cursor[r] == R->nchunks)
			continue;
		int rc = load_chunk(l, c, r, c->cursor[r]);
		if (rc == OK)
			l->chunks_prefetched++;
		return rc;
	}
	return COMPLETE;
}

/* Place a checked chunk in every process that lacks it; one whose map changes under the copy gets it later (complete_step). */
static int place_everywhere(struct lazy *l, uint32_t r, uint32_t k, const uint8_t *buf)
{
	for (int i = 0; i < l->nctx && !failed(l); i++) {
		struct ctx *c = l->ctx[i];
		if (c->finished || c->chunk_done[r][k])
			continue;
		int rc = place_chunk(l, c, r, k, buf);
		if (rc == GONE || (rc == AGAIN && drain(l, c) == GONE))
			ctx_finish(l, c);
		else if (rc == FAILED)
			return FAILED;
	}
	return failed(l) ? FAILED : OK;
}

/*
 * Every chunk is claimed and none is on its way: place what a process still
 * lacks (a chunk whose copy met a changing map, one a forked child missed),
 * and let go of every process that is complete. Returns 1 if it did
 * something.
 */
static int complete_step(struct lazy *l, int *again)
{
	int busy = 0;
	for (int i = 0; i < l->nctx && !failed(l); i++) {
		struct ctx *c = l->ctx[i];
		if (c->finished)
			continue;
		int rc = prefetch_one(l, c);
		if (rc == COMPLETE) {
			/* Complete: a last look at the queue (a fork or fault just before), then let go. */
			int d = drain(l, c);
			if ((d == OK && prefetch_one(l, c) == COMPLETE) || d == GONE)
				ctx_finish(l, c);
			busy = 1;
			continue;
		}
		if (rc == GONE) {
			ctx_finish(l, c);
			continue;
		}
		if (rc == AGAIN) {
			if (++*again > MAX_AGAIN)
				fail(l, "lazy restore: the memory map kept changing under the page copies; the process was killed");
			drain(l, c);
		} else {
			*again = 0;
		}
		return 1; /* one chunk, then look at the queues again */
	}
	return busy;
}

/* Place every chunk the reader has checked, and let go of its slots: between faults, which would otherwise keep it waiting. */
static void place_ready(struct lazy *l)
{
	struct slot *ready[NSLOT];
	int n = 0;
	pthread_mutex_lock(&l->mu);
	for (int i = 0; i < NSLOT; i++)
		if (l->slots[i].state == SLOT_READY)
			ready[n++] = &l->slots[i];
	pthread_mutex_unlock(&l->mu);
	for (int i = 0; i < n && !failed(l); i++) {
		struct slot *s = ready[i];
		/* A fault answered while placing an earlier one may have let this one go (and the reader refilled it). */
		pthread_mutex_lock(&l->mu);
		int still = s->state == SLOT_READY;
		pthread_mutex_unlock(&l->mu);
		if (!still)
			continue;
		s->pinned = 1;
		if (place_everywhere(l, s->range, s->chunk, s->buf) == OK)
			l->chunks_prefetched++;
		s->pinned = 0;
		release_slot(l, s);
	}
}

/*
 * One step of the prefetch: place a chunk the reader has checked; else read,
 * check and place the next chunk nobody has claimed; else, once every chunk
 * is claimed and none is being read, complete_step. Returns 0 when there is
 * nothing to do until the reader is through its chunk.
 */
static int prefetch_step(struct lazy *l, int *again)
{
	pthread_mutex_lock(&l->mu);
	struct slot *s = NULL;
	int reading = 0;
	for (int i = 0; i < NSLOT; i++) {
		if (l->slots[i].state == SLOT_READY && !s)
			s = &l->slots[i];
		reading |= l->slots[i].state == SLOT_FILLING;
	}
	struct want w[2];
	int own = 0;
	while (!s && own < 2 && next_free(l, &w[own].r, &w[own].k)) {
		l->ranges[w[own].r].claim[w[own].k] = CH_TAKEN;
		w[own].buf = l->pbuf + (size_t)own * l->maxchunk * PAGE;
		own++;
	}
	pthread_mutex_unlock(&l->mu);
	if (s) {
		place_ready(l);
		return 1;
	}
	if (own) {
		/* Not l->buf: placing may answer faults, which read into that. */
		if (read_chunks(l, w, own) == OK)
			for (int i = 0; i < own && place_everywhere(l, w[i].r, w[i].k, w[i].buf) == OK; i++)
				l->chunks_prefetched++;
		return 1;
	}
	return reading ? 0 : complete_step(l, again);
}

static void stop_reader(struct lazy *l)
{
	if (!l->reader_started)
		return;
	pthread_mutex_lock(&l->mu);
	l->quit = 1;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	pthread_join(l->reader, NULL);
	l->reader_started = 0;
}

static void clear_eventfd(int fd)
{
	uint64_t v;
	if (read(fd, &v, sizeof v) < 0) {
		/* Already cleared. */
	}
}

static void *serve(void *arg)
{
	struct lazy *l = arg;
	int again = 0;
	while (!failed(l)) {
		struct pollfd p[MAX_CTX + 2];
		int live = 0, n = l->nctx; /* drain may add contexts (forks): they are polled next time round */
		for (int i = 0; i < n; i++) {
			p[i].fd = l->ctx[i]->finished ? -1 : l->ctx[i]->uffd;
			p[i].events = POLLIN;
			p[i].revents = 0;
			live += !l->ctx[i]->finished;
		}
		if (!live)
			break;
		p[n] = (struct pollfd){ l->stopfd, POLLIN, 0 };
		p[n + 1] = (struct pollfd){ l->readyfd, POLLIN, 0 };
		if (poll(p, (nfds_t)n + 2, 0) == 0) {
			/* Nothing waiting: a step of the prefetch, or wait a bounded while if there is nothing to do. */
			if (!__atomic_load_n(&l->prefetch, __ATOMIC_ACQUIRE) || !prefetch_step(l, &again))
				poll(p, (nfds_t)n + 2, IDLE_POLL_MS);
			continue;
		}
		if (p[n + 1].revents)
			clear_eventfd(l->readyfd);
		if (p[n].revents) {
			clear_eventfd(l->stopfd);
			if (__atomic_load_n(&l->stopping, __ATOMIC_ACQUIRE))
				break;
		}
		for (int i = 0; i < n && !failed(l); i++) {
			if (!p[i].revents)
				continue;
			int rc = drain(l, l->ctx[i]);
			if (rc == GONE)
				ctx_finish(l, l->ctx[i]);
		}
		if (__atomic_load_n(&l->prefetch, __ATOMIC_ACQUIRE))
			place_ready(l);
	}
	stop_reader(l);
	l->end_ms = now_ms();
	if (failed(l)) {
		/*
		 * Report at once (JavaScript kills the jail), but keep every
		 * userfaultfd open until told to stop, or for a bounded while:
		 * a thread blocked on a page we refused stays blocked until its
		 * process is dead, and never sees memory we did not give it.
		 */
		napi_call_threadsafe_function(l->done, (void *)1, napi_tsfn_blocking);
		double until = now_ms() + FAILED_HOLD_MS;
		while (!__atomic_load_n(&l->stopping, __ATOMIC_ACQUIRE) && now_ms() < until) {
			struct pollfd st = { l->stopfd, POLLIN, 0 };
			if (poll(&st, 1, (int)(until - now_ms()) + 1) > 0)
				clear_eventfd(l->stopfd);
		}
	}
	napi_call_threadsafe_function(l->done, NULL, napi_tsfn_blocking);
	return NULL;
}

/* On the main thread: the checksums' buffers are let go there. */
static void lazy_free(napi_env env, struct lazy *l)
{
	for (int i = 0; i < l->nctx; i++) {
		if (l->ctx[i]->uffd >= 0)
			close(l->ctx[i]->uffd);
		ctx_free(l, l->ctx[i]);
	}
	for (uint32_t r = 0; r < l->nranges; r++) {
		struct range *R = &l->ranges[r];
		if (R->fd >= 0)
			close(R->fd);
		if (R->sums_ref)
			napi_delete_reference(env, R->sums_ref);
		free(R->runs);
		free(R->by_page);
		free(R->claim);
	}
	free(l->ranges);
	free(l->buf);
	free(l->pbuf);
	for (int i = 0; i < NSLOT; i++)
		free(l->slots[i].buf);
	if (l->stopfd >= 0)
		close(l->stopfd);
	if (l->readyfd >= 0)
		close(l->readyfd);
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mu);
	pthread_mutex_destroy(&l->errmu);
	free(l);
}

static napi_value stats_object(napi_env env, struct lazy *l)
{
	napi_value o;
	napi_create_object(env, &o);
	vj_set_number(env, o, "faults", (double)l->faults);
	vj_set_number(env, o, "chunksOnFault", (double)l->chunks_on_fault);
	vj_set_number(env, o, "chunksPrefetched", (double)l->chunks_prefetched);
	vj_set_number(env, o, "bytes", (double)l->bytes);
	vj_set_number(env, o, "forks", (double)l->forks);
	vj_set_number(env, o, "ms", l->end_ms - l->start_ms);
	return o;
}

/*
 * On the JS thread: done('failed', error, stats) as soon as a page cannot be
 * given (the handle stays valid: call lazyStop once the jail is dead), then
 * done('ended', error | null, stats) once the serving thread has ended (the
 * handle is gone).
 */
static void call_done(napi_env env, napi_value js_cb, void *context, void *data)
{
	struct lazy *l = context;
	if (!env)
		return;
	napi_value args[3], undef;
	napi_get_undefined(env, &undef);
	if (data) {
		napi_create_string_utf8(env, "failed", NAPI_AUTO_LENGTH, &args[0]);
		napi_create_string_utf8(env, l->error, NAPI_AUTO_LENGTH, &args[1]);
		args[2] = stats_object(env, l);
		napi_call_function(env, undef, js_cb, 3, args, NULL);
		return;
	}
	pthread_join(l->thread, NULL);
	l->started = 0;
	napi_create_string_utf8(env, "ended", NAPI_AUTO_LENGTH, &args[0]);
	if (failed(l))
		napi_create_string_utf8(env, l->error, NAPI_AUTO_LENGTH, &args[1]);
	else
		napi_get_null(env, &args[1]);
	args[2] = stats_object(env, l);
	napi_call_function(env, undef, js_cb, 3, args, NULL);
	napi_threadsafe_function tsfn = l->done;
	lazy_free(env, l);
	napi_release_threadsafe_function(tsfn, napi_tsfn_release);
}

static int get_prop(napi_env env, napi_value obj, const char *key, napi_value *out)
{
	return napi_get_named_property(env, obj, key, out) == napi_ok ? 0 : -1;
}

/* Does vj_sha256_pair give OpenSSL's digests (three blocks and a tail, two buffers)? Else OpenSSL alone is used. */
static int pair_agrees(struct lazy *l)
{
	uint8_t data[2][200], ours[2][32], theirs[32];
	for (int i = 0; i < 200; i++) {
		data[0][i] = (uint8_t)(i * 7 + 1);
		data[1][i] = (uint8_t)(i * 13 + 5);
	}
	vj_sha256_pair((const uint8_t *const[2]){ data[0], data[1] }, sizeof data[0], ours);
	for (int i = 0; i < 2; i++) {
		unsigned int len = 32;
		if (!EVP_Digest(data[i], sizeof data[i], theirs, &len, l->sha, NULL) || memcmp(ours[i], theirs, 32) != 0)
			return 0;
	}
	return 1;
}

/*
 * lazyStart(pid, remoteUffd, ranges, done): take the userfaultfd numbered
 * remoteUffd in process pid (pidfd_getfd), and serve it on a thread of its
 * own. ranges: [{ start: bigint, pages, fd, runs: Buffer of uint32 pairs,
 * chunkPages, sums: Buffer | null }]; each fd becomes ours. done(error, stats)
 * is called once every page is in place (or on failure).
 */
napi_value js_lazy_start(napi_env env, napi_callback_info info)
{
	napi_value argv[4];
	if (vj_args(env, info, 4, argv))
		return NULL;
	struct lazy *l = calloc(1, sizeof *l);
	if (!l)
		return vj_throw_errno(env, "calloc", ENOMEM);
	l->stopfd = -1;
	l->readyfd = -1;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* timed_wait's clock */
	pthread_cond_init(&l->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&l->mu, NULL);
	pthread_mutex_init(&l->errmu, NULL);
	l->pid = vj_i32(env, argv[0]);
	int remote = vj_i32(env, argv[1]);
	uint32_t n = 0;
	napi_get_array_length(env, argv[2], &n);
	l->nranges = n;
	l->ranges = calloc(n ? n : 1, sizeof *l->ranges);
	if (!l->ranges) {
		free(l);
		return vj_throw_errno(env, "calloc", ENOMEM);
	}
	for (uint32_t r = 0; r < n; r++)
		l->ranges[r].fd = -1;
	uint32_t maxchunk = 1;
	const char *bad = NULL;
	for (uint32_t r = 0; r < n && !bad; r++) {
		struct range *R = &l->ranges[r];
		napi_value o, v;
		napi_get_element(env, argv[2], r, &o);
		if (get_prop(env, o, "start", &v))
			bad = "start";
		R->start = vj_u64(env, v);
		get_prop(env, o, "pages", &v);
		R->npages = (uint32_t)vj_i32(env, v);
		get_prop(env, o, "fd", &v);
		R->fd = vj_i32(env, v);
		get_prop(env, o, "chunkPages", &v);
		R->chunk = (uint32_t)vj_i32(env, v);
		void *runs;
		size_t runslen;
		get_prop(env, o, "runs", &v);
		if (vj_buffer(env, v, "runs", &runs, &runslen)) {
			bad = "runs";
			break;
		}
		const uint32_t *rp = runs;
		R->nruns = (uint32_t)(runslen / 8);
		R->runs = malloc((R->nruns ? R->nruns : 1) * sizeof *R->runs);
		R->by_page = malloc((R->nruns ? R->nruns : 1) * sizeof *R->by_page);
		if (!R->runs || !R->by_page) {
			bad = "memory";
			break;
		}
		uint64_t nfile = 0;
		for (uint32_t i = 0; i < R->nruns && !bad; i++) {
			uint64_t first = rp[2 * i], count = rp[2 * i + 1];
			if (count == 0 || first + count > R->npages || nfile + count > UINT32_MAX)
				bad = "runs beyond the mapping";
			R->runs[i] = (struct run){ (uint32_t)first, (uint32_t)count, (uint32_t)nfile };
			nfile += count;
		}
		if (bad)
			break;
		R->nfile = (uint32_t)nfile;
		memcpy(R->by_page, R->runs, R->nruns * sizeof *R->runs);
		qsort(R->by_page, R->nruns, sizeof *R->by_page, by_first);
		for (uint32_t i = 1; i < R->nruns && !bad; i++)
			if (R->by_page[i].first < R->by_page[i - 1].first + R->by_page[i - 1].count)
				bad = "overlapping runs";
		if (bad)
			break;
		if (R->chunk == 0 || R->npages == 0) {
			bad = "chunkPages";
			break;
		}
		R->nchunks = (R->nfile + R->chunk - 1) / R->chunk;
		if (R->chunk > maxchunk)
			maxchunk = R->chunk;
		R->claim = calloc(R->nchunks ? R->nchunks : 1, 1);
		if (!R->claim) {
			bad = "memory";
			break;
		}
		get_prop(env, o, "sums", &v);
		napi_valuetype t;
		napi_typeof(env, v, &t);
		if (t != napi_null && t != napi_undefined) {
			void *s;
			size_t slen;
			if (vj_buffer(env, v, "sums", &s, &slen) || slen != (size_t)R->nchunks * 32) {
				bad = "sums";
				break;
			}
			/* Held, not copied: a Buffer's memory stays where it is while referenced. */
			if (napi_create_reference(env, v, 1, &R->sums_ref) != napi_ok) {
				bad = "sums";
				break;
			}
			R->sums = s;
		}
	}
	if (bad) {
		lazy_free(env, l);
		bool pending = false;
		napi_is_exception_pending(env, &pending);
		if (!pending)
			napi_throw_type_error(env, NULL, "lazyStart: bad range description");
		return NULL;
	}
	l->maxchunk = maxchunk;
	l->sha = EVP_sha256();
	l->pair = vj_sha256_pair_supported() && pair_agrees(l);
	l->buf = malloc(2 * (size_t)maxchunk * PAGE);
	l->pbuf = malloc(2 * (size_t)maxchunk * PAGE);
	int nobuf = !l->buf || !l->pbuf;
	for (int i = 0; i < NSLOT; i++)
		nobuf |= !(l->slots[i].buf = malloc((size_t)maxchunk * PAGE));
	l->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	l->readyfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int pidfd = (int)syscall(SYS_pidfd_open, l->pid, 0);
	int uffd = pidfd < 0 ? -1 : (int)syscall(SYS_pidfd_getfd, pidfd, remote, 0);
	int err = errno;
	if (pidfd >= 0)
		close(pidfd);
	if (uffd < 0 || nobuf || l->stopfd < 0 || l->readyfd < 0) {
		lazy_free(env, l);
		return vj_throw_errno(env, "pidfd_getfd of the restored process's userfaultfd", uffd < 0 ? err : ENOMEM);
	}
	fcntl(uffd, F_SETFL, O_NONBLOCK);
	struct ctx *c = ctx_new(l, uffd);
	if (!c) {
		close(uffd);
		lazy_free(env, l);
		return vj_throw_errno(env, "calloc", ENOMEM);
	}
	l->ctx[l->nctx++] = c;
	for (uint32_t r = 0; r < n; r++) {
		struct view v = { l->ranges[r].start, r, 0, l->ranges[r].npages };
		if (view_add(c, v)) {
			lazy_free(env, l);
			return vj_throw_errno(env, "calloc", ENOMEM);
		}
	}
	napi_value name;
	napi_create_string_utf8(env, "vjail lazy pages", NAPI_AUTO_LENGTH, &name);
	if (napi_create_threadsafe_function(env, argv[3], NULL, name, 0, 1, NULL, NULL, l, call_done, &l->done) != napi_ok) {
		lazy_free(env, l);
		return NULL;
	}
	l->start_ms = now_ms();
	/* Without a reader thread, the serving thread reads every chunk itself. */
	l->reader_started = pthread_create(&l->reader, NULL, reader, l) == 0;
	if (pthread_create(&l->thread, NULL, serve, l) != 0) {
		stop_reader(l);
		napi_release_threadsafe_function(l->done, napi_tsfn_release);
		lazy_free(env, l);
		return vj_throw_errno(env, "pthread_create", EAGAIN);
	}
	l->started = 1;
	napi_value handle;
	napi_create_external(env, l, NULL, NULL, &handle);
	return handle;
}

/* Set `flag` and wake the serving thread (cutting its idle wait short; the next poll sees the flag anyway). */
static void lazy_signal(struct lazy *l, volatile int *flag)
{
	__atomic_store_n(flag, 1, __ATOMIC_RELEASE);
	pthread_mutex_lock(&l->mu);
	pthread_cond_broadcast(&l->cv); /* the reader, waiting for the prefetch */
	pthread_mutex_unlock(&l->mu);
	uint64_t one = 1;
	if (write(l->stopfd, &one, sizeof one) < 0) {
		/* An eventfd counter cannot overflow at one write: nothing to do. */
	}
}

/* The lazy handle given as the only argument; NULL with an exception pending on bad arguments. */
static struct lazy *lazy_arg(napi_env env, napi_callback_info info, int *ok)
{
	napi_value argv[1];
	*ok = !vj_args(env, info, 1, argv);
	void *p = NULL;
	if (*ok)
		napi_get_value_external(env, argv[0], &p);
	return p;
}

/* lazyPrefetch(handle): the processes run; start placing every page in the background. */
napi_value js_lazy_prefetch(napi_env env, napi_callback_info info)
{
	int ok;
	struct lazy *l = lazy_arg(env, info, &ok);
	if (!ok)
		return NULL;
	if (l)
		lazy_signal(l, &l->prefetch);
	return vj_undefined(env);
}

/* lazyStop(handle): end the serving thread early (a failed restore); done is still called. */
napi_value js_lazy_stop(napi_env env, napi_callback_info info)
{
	int ok;
	struct lazy *l = lazy_arg(env, info, &ok);
	if (!ok)
		return NULL;
	if (l && l->stopfd >= 0)
		lazy_signal(l, &l->stopping);
	return vj_undefined(env);
}
