/*
 * The open shim's fast path (openfast.h).
 *
 * Exactness rests on three guards, each falling back to JavaScript:
 * - the caller's root is the supervisor's (same mount, same inode), so an
 *   absolute path or symlink means the same file for both;
 * - the walk runs with RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS from a base
 *   that is not procfs or sysfs, so it never enters /proc ("self", per-task
 *   entries, magic links name the supervisor there) and the file it opens
 *   can never be one the profile presents;
 * - only regular files and directories are opened here (a FIFO or device
 *   open may block or mean something else when vjail makes it), checked
 *   before the open and again on the opened file.
 * The receiving thread has its own fs_struct (unshare CLONE_FS), so the
 * caller's umask is set on it alone, and it wears the caller's ids, groups
 * and effective capabilities with raw per-thread syscalls for the span of
 * the walk, and keeps it on for the next call (see wear); a caller with the
 * same identity as the last one, or as the supervisor, costs nothing.
 */
#include "openfast.h"
#include "caller.h"
#include "caps.h"
#include "seccomp_compat.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SECCOMP_ADDFD_FLAG_SEND
#define SECCOMP_ADDFD_FLAG_SEND (1UL << 1)
#endif
#ifndef SYSFS_MAGIC
#define SYSFS_MAGIC 0x62656572
#endif
#define AUDIT_ARCH_X86_64_ 0xC000003EU
#define FASYNC_ 020000
#define TMPFILE_ 020000000 /* __O_TMPFILE */
/* Flags open and openat keep (the kernel drops other bits silently; openat2 would refuse them). */
#define VALID_OPEN_FLAGS_                                                                                       \
	(O_ACCMODE | O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_APPEND | O_NONBLOCK | O_DSYNC | FASYNC_ | O_DIRECT | \
	 O_LARGEFILE | O_DIRECTORY | O_NOFOLLOW | O_NOATIME | O_CLOEXEC | O_SYNC)

/*
 * Build with -DVJAIL_OPENFAST_PROFILE to see where a fast-path open spends
 * its time: each step's total is printed to stderr when the thread's state
 * is destroyed. Off by default (no cost).
 */
#ifdef VJAIL_OPENFAST_PROFILE
#include <time.h>
enum { P_PATH, P_STATUS, P_USERNS, P_ROOT, P_BASE, P_WEAR, P_PRECHECK, P_OPEN, P_CHECK, P_ADDFD, P_STEPS };
static const char *const p_names[P_STEPS] = { "read path", "status", "user ns", "root", "base", "wear", "fstatat", "openat2", "fstat+setfl", "addfd+close" };
static uint64_t p_total[P_STEPS], p_calls, p_last;
static uint64_t p_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
#include <stdlib.h>
static void prof_print(void);
static void prof_register(void)
{
	static int done;
	if (!done++)
		atexit(prof_print);
}
#define PROF_START() (p_calls++, p_last = p_now())
#define PROF(step)                             \
	do {                                   \
		uint64_t t_ = p_now();         \
		p_total[step] += t_ - p_last; \
		p_last = t_;                   \
	} while (0)
static void prof_print(void)
{
	if (!p_calls)
		return;
	fprintf(stderr, "openfast profile: %llu calls\n", (unsigned long long)p_calls);
	uint64_t sum = 0;
	for (int i = 0; i < P_STEPS; i++)
		sum += p_total[i];
	fprintf(stderr, "  %-12s %8.2f us/call\n", "all", (double)sum / 1000.0 / (double)p_calls);
	for (int i = 0; i < P_STEPS; i++)
		fprintf(stderr, "  %-12s %8.2f us/call\n", p_names[i], (double)p_total[i] / 1000.0 / (double)p_calls);
}
#else
#define PROF_START() ((void)0)
#define PROF(step) ((void)0)
static void prof_print(void)
{
}
static void prof_register(void)
{
}
#endif

static uint64_t caps_eff(const struct __user_cap_data_struct *d)
{
	return (uint64_t)d[0].effective | (uint64_t)d[1].effective << 32;
}

static uint64_t caps_perm(const struct __user_cap_data_struct *d)
{
	return (uint64_t)d[0].permitted | (uint64_t)d[1].permitted << 32;
}

void of_thread_init(struct open_fast *of)
{
	of->ready = 0;
	memset(of->misses, 0, sizeof of->misses);
	if (!of->enabled)
		return;
	prof_register();
	for (int i = 0; i < OF_STATUS_SLOTS; i++)
		if (of->status[i].tid == 0)
			of->status[i].fd = -1;
	/* Its own umask (and cwd, unused) from now on: the rest of the process keeps the shared one. */
	if (unshare(CLONE_FS))
		return;
	struct statx root;
	if (statx(AT_FDCWD, "/", 0, STATX_INO | STATX_MNT_ID, &root) || !(root.stx_mask & STATX_MNT_ID))
		return;
	of->root_mnt = root.stx_mnt_id;
	of->root_ino = root.stx_ino;
	ssize_t nl = readlink("/proc/self/ns/user", of->userns, sizeof of->userns - 1);
	if (nl <= 0 || (size_t)nl >= sizeof of->userns - 1)
		return;
	of->userns[nl] = 0;
	struct of_identity *o = &of->own;
	o->euid = (uint32_t)geteuid();
	o->egid = (uint32_t)getegid();
	o->fsuid = (uint32_t)syscall(SYS_setfsuid, (uid_t)-1);
	o->fsgid = (uint32_t)syscall(SYS_setfsgid, (gid_t)-1);
	int ng = getgroups(OF_MAX_GROUPS, (gid_t *)o->groups);
	if (ng < 0 || cap_get(of->own_caps))
		return;
	o->ngroups = (uint32_t)ng;
	o->cap_eff = caps_eff(of->own_caps);
	of->own_dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
	of->umask_now = (uint32_t)umask(022);
	umask((mode_t)of->umask_now);
	of->worn = *o;
	of->worn_changed = 0;
	of->ready = 1;
}

void of_release(struct open_fast *of)
{
	for (int i = 0; i < OF_STATUS_SLOTS; i++) {
		if (of->status[i].tid > 0 && of->status[i].fd >= 0)
			close(of->status[i].fd);
		of->status[i].tid = 0;
		of->status[i].fd = -1;
	}
	idc_destroy(&of->ids);
}

void of_destroy(struct open_fast *of)
{
	prof_print();
	of_release(of);
}

/* ---- the caller's identity, from /proc/TID/status -------------------------- */

static int status_fd(struct open_fast *of, pid_t tid, int fresh)
{
	for (int i = 0; i < OF_STATUS_SLOTS; i++) {
		struct of_status_slot *sl = &of->status[i];
		if (sl->tid == tid && sl->fd >= 0) {
			if (!fresh)
				return sl->fd;
			close(sl->fd);
			sl->tid = 0;
			sl->fd = -1;
		}
	}
	char p[48];
	snprintf(p, sizeof p, "/proc/%d/status", (int)tid);
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct of_status_slot *sl = &of->status[of->next_slot++ % OF_STATUS_SLOTS];
	if (sl->tid > 0 && sl->fd >= 0)
		close(sl->fd);
	sl->tid = tid;
	sl->fd = fd;
	return fd;
}

/* The value after "Key:" in the status text, or NULL. */
static const char *field(const char *text, const char *key)
{
	size_t kl = strlen(key);
	for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
		if (!strncmp(l, key, kl) && l[kl] == ':')
			return l + kl + 1;
	return NULL;
}

static const char *skip_space(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

static int parse_u32(const char **p, uint32_t *out, int base)
{
	const char *s = skip_space(*p);
	uint64_t v = 0;
	const char *start = s;
	for (;; s++) {
		int d = *s >= '0' && *s <= '9' ? *s - '0' : base == 16 && *s >= 'a' && *s <= 'f' ? *s - 'a' + 10 : -1;
		if (d < 0)
			break;
		v = v * (uint64_t)base + (uint64_t)d;
		if (v > UINT32_MAX)
			return -1;
	}
	if (s == start)
		return -1;
	*out = (uint32_t)v;
	*p = s;
	return 0;
}

/* Uid/Gid lines: real, effective, saved, fs. */
static int parse_ids(const char *v, uint32_t *eff, uint32_t *fs)
{
	uint32_t ids[4];
	for (int i = 0; i < 4; i++)
		if (!v || parse_u32(&v, &ids[i], 10))
			return -1;
	*eff = ids[1];
	*fs = ids[3];
	return 0;
}

static int parse_identity(const char *text, struct of_identity *id)
{
	if (parse_ids(field(text, "Uid"), &id->euid, &id->fsuid) || parse_ids(field(text, "Gid"), &id->egid, &id->fsgid))
		return -1;
	const char *g = field(text, "Groups");
	const char *m = field(text, "Umask");
	const char *c = field(text, "CapEff");
	if (!g || !m || !c)
		return -1;
	id->ngroups = 0;
	for (;;) {
		g = skip_space(g);
		if (*g < '0' || *g > '9')
			break;
		if (id->ngroups == OF_MAX_GROUPS || parse_u32(&g, &id->groups[id->ngroups], 10))
			return -1;
		id->ngroups++;
	}
	if (parse_u32(&m, &id->umask, 8))
		return -1;
	c = skip_space(c);
	uint64_t caps = 0;
	int digits = 0;
	for (; (*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'); c++, digits++)
		caps = caps << 4 | (uint64_t)(*c <= '9' ? *c - '0' : *c - 'a' + 10);
	if (digits == 0 || digits > 16)
		return -1;
	id->cap_eff = caps;
	return 0;
}

static int read_identity(struct open_fast *of, pid_t tid, struct of_identity *id)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		int fd = status_fd(of, tid, attempt);
		if (fd < 0)
			return -1;
		ssize_t r = pread(fd, of->text, sizeof of->text - 1, 0);
		if (r > 0) {
			of->text[r] = 0;
			return parse_identity(of->text, id);
		}
	}
	return -1;
}

/* The caller's user namespace is the supervisor's: the link names it by its inode number, unique while ours lives. */
static int same_userns(struct open_fast *of, pid_t tid)
{
	char p[48], link[sizeof of->userns];
	snprintf(p, sizeof p, "/proc/%d/ns/user", (int)tid);
	ssize_t n = readlink(p, link, sizeof link - 1);
	if (n <= 0 || (size_t)n >= sizeof link - 1)
		return 0;
	link[n] = 0;
	return !strcmp(link, of->userns);
}

/* ---- wearing it -------------------------------------------------------------- */

enum { W_GROUPS = 1, W_EGID = 2, W_EUID = 4, W_FSGID = 8, W_FSUID = 16, W_CAPS = 32 };

static int same_groups(const struct of_identity *a, const struct of_identity *b)
{
	return a->ngroups == b->ngroups && !memcmp(a->groups, b->groups, a->ngroups * sizeof a->groups[0]);
}

/* The umask aside: it is set on its own. */
static int same_identity(const struct of_identity *a, const struct of_identity *b)
{
	return a->euid == b->euid && a->egid == b->egid && a->fsuid == b->fsuid && a->fsgid == b->fsgid &&
	       a->cap_eff == b->cap_eff && same_groups(a, b);
}

#define CAP_SYS_PTRACE_BIT (1ULL << CAP_SYS_PTRACE)

static void take_back(struct open_fast *of, int changed)
{
	const struct of_identity *o = &of->own;
	if (!changed)
		return;
	/* Effective capabilities first: they allow the id changes that follow. */
	cap_set(of->own_caps);
	if (changed & W_EUID)
		syscall(SYS_setresuid, (uid_t)-1, (uid_t)o->euid, (uid_t)-1);
	if (changed & W_EGID)
		syscall(SYS_setresgid, (gid_t)-1, (gid_t)o->egid, (gid_t)-1);
	/* setresuid/setresgid moved the fs id along with the effective one. */
	if ((changed & W_FSUID) || ((changed & W_EUID) && o->fsuid != o->euid))
		syscall(SYS_setfsuid, (uid_t)o->fsuid);
	if ((changed & W_FSGID) || ((changed & W_EGID) && o->fsgid != o->egid))
		syscall(SYS_setfsgid, (gid_t)o->fsgid);
	if (changed & W_GROUPS)
		syscall(SYS_setgroups, (int)o->ngroups, (const gid_t *)o->groups);
	/* Back to euid 0, the kernel raised the effective set to the permitted one. */
	if ((changed & W_EUID) && o->cap_eff != caps_perm(of->own_caps))
		cap_set(of->own_caps);
	/* Changing ids made the process undumpable (commit_creds): as it was. */
	if (changed & (W_EUID | W_EGID | W_FSUID | W_FSGID))
		prctl(PR_SET_DUMPABLE, of->own_dumpable, 0, 0, 0);
}

/* Wear `w`: the mask of what changed (to take back), or -1 (nothing changed then). */
static int wear(struct open_fast *of, const struct of_identity *w)
{
	const struct of_identity *o = &of->own;
	int changed = 0;
	if (w->cap_eff & ~caps_perm(of->own_caps))
		return -1; /* a capability the caller has and vjail lacks */
	if (!same_groups(w, o)) {
		changed |= W_GROUPS;
		if (syscall(SYS_setgroups, (int)w->ngroups, (const gid_t *)w->groups))
			goto fail;
	}
	if (w->egid != o->egid) {
		changed |= W_EGID;
		if (syscall(SYS_setresgid, (gid_t)-1, (gid_t)w->egid, (gid_t)-1))
			goto fail;
	}
	if (w->euid != o->euid) {
		changed |= W_EUID;
		if (syscall(SYS_setresuid, (uid_t)-1, (uid_t)w->euid, (uid_t)-1))
			goto fail;
	}
	/* setresuid/setresgid moved the fs id along with the effective one. */
	uint32_t fsgid_now = (changed & W_EGID) ? w->egid : o->fsgid;
	uint32_t fsuid_now = (changed & W_EUID) ? w->euid : o->fsuid;
	if (w->fsgid != fsgid_now) {
		changed |= W_FSGID;
		syscall(SYS_setfsgid, (gid_t)w->fsgid);
		if ((uint32_t)syscall(SYS_setfsgid, (gid_t)-1) != w->fsgid)
			goto fail;
	}
	if (w->fsuid != fsuid_now) {
		changed |= W_FSUID;
		syscall(SYS_setfsuid, (uid_t)w->fsuid);
		if ((uint32_t)syscall(SYS_setfsuid, (uid_t)-1) != w->fsuid)
			goto fail;
	}
	/*
	 * The caller's effective capabilities, and CAP_SYS_PTRACE where vjail has
	 * it: the identity stays on from call to call, and the next call's reads
	 * of its caller (memory, /proc/TID/root and cwd) need it. It changes no
	 * check of the walk itself, which never enters procfs (NO_XDEV from a
	 * base that is not procfs).
	 */
	uint64_t eff = w->cap_eff | (caps_perm(of->own_caps) & CAP_SYS_PTRACE_BIT);
	changed |= W_CAPS;
	struct __user_cap_data_struct want[2] = { of->own_caps[0], of->own_caps[1] };
	want[0].effective = (uint32_t)eff;
	want[1].effective = (uint32_t)(eff >> 32);
	if (cap_set(want))
		goto fail;
	if (changed & (W_EUID | W_EGID | W_FSUID | W_FSGID))
		prctl(PR_SET_DUMPABLE, of->own_dumpable, 0, 0, 0);
	return changed;
fail:
	take_back(of, changed | W_CAPS);
	return -1;
}

/* Wear `w` for this call: nothing to do when the last caller was the same. 0, or -1 (own identity back on). */
static int put_on(struct open_fast *of, const struct of_identity *w)
{
	if (same_identity(w, &of->worn))
		return 0;
	take_back(of, of->worn_changed);
	of->worn = of->own;
	of->worn_changed = 0;
	if (same_identity(w, &of->own))
		return 0;
	int changed = wear(of, w);
	if (changed < 0)
		return -1;
	of->worn = *w;
	of->worn_changed = changed;
	return 0;
}

/* ---- the open ------------------------------------------------------------------ */

static int is_special_fs(int fd)
{
	struct statfs sf;
	if (fstatfs(fd, &sf))
		return 1;
	return sf.f_type == PROC_SUPER_MAGIC || sf.f_type == SYSFS_MAGIC;
}

static int send_errno(int listener, uint64_t id, int err)
{
	struct seccomp_notif_resp resp = { .id = id, .val = 0, .error = -err, .flags = 0 };
	ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
	return 0;
}

/* FNV-1a of the path, never 0 (an empty slot). */
static uint64_t path_hash(const char *p, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)p[i]) * 0x100000001b3ULL;
	return h ? h : 1;
}

static uint64_t *miss_slot(struct open_fast *of, uint64_t h)
{
	return &of->misses[h & (OF_MISS_SLOTS - 1)];
}

/* Errors that may not be the kernel's answer to the caller's own call: JavaScript decides. */
static int unsure_errno(int err)
{
	return err == EXDEV || err == ELOOP || err == EAGAIN || err == ENXIO || err == EINTR || err == EINVAL ||
	       err == ENOSYS || err == E2BIG || err == ENODEV || err == EOPNOTSUPP;
}

/*
 * The caller's identity into of->want, from its status, if the fast path can
 * serve it: its capabilities count in vjail's user namespace and its root
 * is vjail's. 0, or -1: JavaScript must answer.
 */
static int learn_caller(struct open_fast *of, pid_t tid)
{
	if (read_identity(of, tid, &of->want))
		return -1;
	PROF(P_STATUS);
	/*
	 * Capabilities count in the caller's user namespace: one that made its
	 * own (root there, every capability) has none in ours. That case goes
	 * to JavaScript, which drops them (shims/identity.ts). A caller without
	 * effective capabilities needs no look: they are the only part of the
	 * identity that depends on the namespace (the ids in its status are
	 * already mapped into ours, the reader's, and every namespace a jailed
	 * task can enter lies below vjail's), and it has none in ours either.
	 */
	if (of->want.cap_eff && !same_userns(of, tid))
		return -1;
	PROF(P_USERNS);
	/* The caller's root must be the supervisor's. */
	char p[64];
	snprintf(p, sizeof p, "/proc/%d/root", (int)tid);
	struct statx rs;
	if (statx(AT_FDCWD, p, 0, STATX_INO | STATX_MNT_ID, &rs) || !(rs.stx_mask & STATX_MNT_ID) ||
	    rs.stx_mnt_id != of->root_mnt || rs.stx_ino != of->root_ino)
		return -1;
	PROF(P_ROOT);
	return 0;
}

int of_try(struct open_fast *of, int listener, const struct seccomp_notif *n)
{
	if (!of->ready || n->data.arch != AUDIT_ARCH_X86_64_)
		return -1;
	int dirfd;
	uint64_t addr;
	uint32_t flags, mode;
	if (n->data.nr == __NR_open) {
		dirfd = AT_FDCWD;
		addr = n->data.args[0];
		flags = (uint32_t)n->data.args[1];
		mode = (uint32_t)n->data.args[2];
	} else if (n->data.nr == __NR_openat) {
		dirfd = (int)n->data.args[0];
		addr = n->data.args[1];
		flags = (uint32_t)n->data.args[2];
		mode = (uint32_t)n->data.args[3];
	} else {
		return -1;
	}
	flags &= VALID_OPEN_FLAGS_;
	if (flags & (O_PATH | TMPFILE_ | FASYNC_))
		return -1;
	pid_t tid = (pid_t)n->pid;
	size_t len = 0;
	PROF_START();
	if (caller_read_string(tid, addr, of->path, sizeof of->path, &len) || len == 0)
		return -1;
	PROF(P_PATH);
	int absolute = of->path[0] == '/';
	if (!absolute && dirfd != AT_FDCWD && dirfd < 0)
		return -1;
	/* The umask is shared between threads and never kept: a creating open reads it. */
	const struct of_identity *want = (flags & O_CREAT) ? NULL : idc_find(&of->ids, tid);
	if (!want) {
		int pidfd = idc_begin(&of->ids, tid);
		if (learn_caller(of, tid)) {
			if (pidfd >= 0)
				close(pidfd);
			return -1;
		}
		/* Read while the caller still waits here: its own, and settled (a thread changes only its own). */
		if (pidfd >= 0 && ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &n->id)) {
			close(pidfd);
			return 0;
		}
		if (pidfd >= 0)
			idc_store(&of->ids, tid, pidfd, &of->want);
		want = &of->want;
	}
	PROF(P_STATUS);
	char p[64];
	/* Where the walk starts: "/" is not procfs; the caller's cwd or dirfd is checked. */
	int base = AT_FDCWD;
	if (!absolute) {
		if (dirfd == AT_FDCWD)
			snprintf(p, sizeof p, "/proc/%d/cwd", (int)tid);
		else
			snprintf(p, sizeof p, "/proc/%d/fd/%d", (int)tid, dirfd);
		base = open(p, O_PATH | O_CLOEXEC);
		if (base < 0)
			return -1;
		if (is_special_fs(base)) {
			close(base);
			return -1;
		}
	}
	/* The pid read above was still the caller's, before anything is changed on its behalf. */
	if ((flags & (O_CREAT | O_TRUNC)) && ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &n->id)) {
		if (base >= 0)
			close(base);
		return 0;
	}

	PROF(P_BASE);
	if (put_on(of, want)) {
		if (base >= 0)
			close(base);
		return -1;
	}
	if ((flags & O_CREAT) && want->umask != of->umask_now) {
		umask((mode_t)want->umask);
		of->umask_now = want->umask;
	}
	int fd = -1, err = 0, fallback = 0;
	struct stat st;
	PROF(P_WEAR);
	/* An absolute path whose last open found nothing: probably nothing again. */
	uint64_t hash = (absolute && !(flags & O_CREAT)) ? path_hash(of->path, len) : 0;
	uint64_t *miss = hash ? miss_slot(of, hash) : NULL;
	int looked = 0;
	if (miss && *miss == hash) {
		/*
		 * One walk, O_PATH (no open of the file itself, so nothing a FIFO
		 * or device would do): it fails where the open's walk would, with
		 * the same restrictions and the same errno; if it finds the file,
		 * its type is what the look below would have learnt.
		 */
		struct open_how look = {
			.flags = O_PATH | O_CLOEXEC | (flags & (O_NOFOLLOW | O_DIRECTORY)),
			.resolve = RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS,
		};
		int pf = (int)syscall(SYS_openat2, base, of->path, &look, sizeof look);
		if (pf < 0) {
			err = errno;
			if (base >= 0)
				close(base);
			if (unsure_errno(err))
				return -1;
			return send_errno(listener, n->id, err);
		}
		*miss = 0;
		looked = 1;
		if (fstat(pf, &st) || (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)))
			fallback = 1;
		close(pf);
	}
	/* Not a FIFO or device (its open may block or differ when vjail makes it): looked at first. */
	if (!looked && fstatat(base, of->path, &st, (flags & O_NOFOLLOW) ? AT_SYMLINK_NOFOLLOW : 0) == 0 &&
	    !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
		fallback = 1;
	if (!fallback) {
		PROF(P_PRECHECK);
		struct open_how how = {
			.flags = (uint64_t)(flags | O_NONBLOCK | O_NOCTTY),
			.mode = (flags & O_CREAT) ? (mode & 07777) : 0,
			.resolve = RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS,
		};
		fd = (int)syscall(SYS_openat2, base, of->path, &how, sizeof how);
		if (fd < 0)
			err = errno;
	}
	if (base >= 0)
		close(base);
	PROF(P_OPEN);
	if (fallback || (fd < 0 && unsure_errno(err)))
		return -1;
	if (fd < 0) {
		if (miss && (err == ENOENT || err == ENOTDIR))
			*miss = hash;
		return send_errno(listener, n->id, err);
	}
	/* And again on what was opened: it may have been swapped since. */
	if (fstat(fd, &st) || (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))) {
		close(fd);
		return -1;
	}
	/* The open was made O_NONBLOCK: taken off again unless the caller asked for it. */
	if (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags & (O_APPEND | O_DIRECT | O_NOATIME))) {
		close(fd);
		return -1;
	}
	PROF(P_CHECK);
	struct seccomp_notif_addfd add = {
		.id = n->id,
		.flags = SECCOMP_ADDFD_FLAG_SEND,
		.srcfd = (uint32_t)fd,
		.newfd = 0,
		.newfd_flags = (flags & O_CLOEXEC) ? O_CLOEXEC : 0,
	};
	int r = ioctl(listener, SECCOMP_IOCTL_NOTIF_ADDFD, &add);
	err = r < 0 ? errno : 0;
	if (r < 0 && err == EINVAL) {
		/* A kernel without ADDFD_FLAG_SEND (before 5.14): install, then answer. */
		add.flags = 0;
		r = ioctl(listener, SECCOMP_IOCTL_NOTIF_ADDFD, &add);
		err = r < 0 ? errno : 0;
		if (r >= 0) {
			struct seccomp_notif_resp resp = { .id = n->id, .val = r, .error = 0, .flags = 0 };
			ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
		}
	}
	close(fd);
	/* ENOENT: the caller is gone. Otherwise (EMFILE...) the caller's own error. */
	if (r < 0 && err != ENOENT)
		send_errno(listener, n->id, err);
	PROF(P_ADDFD);
	return 0;
}
