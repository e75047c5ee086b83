/*
 * vjail-guard PID TABLE-FD: stands by while vjail (PID) checkpoints a jail
 * and, if vjail dies meanwhile (SIGKILL included), lets the jail go as it was.
 *
 * A task whose tracer dies is let go by the kernel with whatever registers
 * and signal mask the tracer had loaded. So the guard traces vjail's main
 * thread (the tracer of the jail's tasks) with PTRACE_O_TRACEEXIT: a dying
 * vjail stops at PTRACE_EVENT_EXIT before the kernel lets go of its
 * tracees. The guard then reads the table (guard.h: what vjail had changed
 * in each task, in a memfd shared with vjail: TABLE-FD), freezes the jail's
 * cgroup (so a task let go cannot reach its own code), lets vjail die,
 * attaches to each task again, puts back its registers and mask, lets it
 * go, and thaws the cgroup.
 *
 * The kernel does not always take that exit stop (seen about once in a few
 * hundred SIGKILLs on a loaded host): vjail's tasks are then let go at
 * once, with what vjail had loaded. A task holding our registers is parked
 * (guard.h, `park`) and one holding only our mask runs its own code with
 * every signal blocked, so the guard does the same work as soon as it sees
 * vjail gone: the table is still there for it to read.
 *
 * Meanwhile signals to vjail are passed on unchanged. On "d" (done) on stdin
 * the guard detaches from vjail and exits. Writes "ok" on stdout once vjail
 * is traced, or "error: ..." and exits 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/elf.h>

#include "guard.h"

#define EVENT(st) ((unsigned)(st) >> 16)

_Static_assert(sizeof(struct user_regs_struct) == GUARD_GPRS * 8, "guard.h keeps user_regs_struct");

static pid_t vjail;
static const struct guard_table *shared;
static struct guard_table table;

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap(void)
{
	struct timespec ts = { 0, 1000 * 1000 };
	nanosleep(&ts, NULL);
}

/* One line on stderr; err (an errno) is named when not 0. */
__attribute__((format(printf, 2, 3))) static void say(int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "vjail-guard: ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (err)
		fprintf(stderr, ": %s", strerror(err));
	fputc('\n', stderr);
}

/* The table as vjail left it (vjail is stopped at its exit, or gone). */
static int read_table(void)
{
	size_t head = offsetof(struct guard_table, tasks);
	memcpy(&table, shared, head);
	if (table.magic != GUARD_MAGIC || table.ntasks < 0 || table.ntasks > GUARD_MAX_TASKS) {
		errno = EINVAL;
		return -1;
	}
	memcpy(table.tasks, shared->tasks, (size_t)table.ntasks * sizeof(struct guard_task));
	return 0;
}

static void set_frozen(int frozen)
{
	if (!table.cgroup_kind)
		return;
	char path[4200];
	snprintf(path, sizeof path, "%s/%s", table.cgroup, table.cgroup_kind == 2 ? "cgroup.freeze" : "freezer.state");
	const char *v = table.cgroup_kind == 2 ? (frozen ? "1" : "0") : (frozen ? "FROZEN" : "THAWED");
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, v, strlen(v)) < 0)
		say(errno, "cannot %s the jail's cgroup %s", frozen ? "freeze" : "thaw", table.cgroup);
	if (fd >= 0)
		close(fd);
}

/* The task is where our registers took it: at the `syscall` instruction, just after, or in the parking loop around it. */
static int at_ours(const struct guard_task *t, uint64_t rip)
{
	if (rip == t->gadget || rip == t->gadget + 2)
		return 1;
	return t->park && rip >= t->gadget - 5 && rip < t->gadget - 5 + t->park;
}

/* Offsets in a signal frame at the handler's rsp: the return address, then ucontext (flags, link, stack: 40 bytes), whose mcontext begins r8..r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags. */
#define FRAME_MCONTEXT (8 + 40)
#define FRAME_WORDS 18
#define FRAME_RSP 15
#define FRAME_RIP 16

/*
 * vjail died at a signal-delivery stop while our registers were loaded: the
 * kernel delivered the signal on them, and the handler's frame (at rsp)
 * saves them. Save the task's own there instead, as the kernel would have
 * (a call it was in restarted, or failing with EINTR where a handler always
 * makes it), so the handler runs and its sigreturn returns to the task's
 * own code. Only a frame that really holds our registers (at the `syscall`
 * instruction we loaded, on the task's own stack pointer) is written: any
 * other frame is the task's own and must stay as it is.
 */
static int fix_frame(pid_t tid, uint64_t rsp, const struct guard_task *t, const struct user_regs_struct *own)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/mem", tid);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	uint64_t saved[FRAME_WORDS];
	if (pread(fd, saved, sizeof saved, (off_t)(rsp + FRAME_MCONTEXT)) != (ssize_t)sizeof saved) {
		close(fd);
		return -1;
	}
	/* Parked, the task's rsp is inside the parking frame. */
	uint64_t frame = GUARD_PARK_FRAME(own->rsp);
	int parked_rsp = t->park && saved[FRAME_RSP] >= frame && saved[FRAME_RSP] <= frame + 16;
	if (!at_ours(t, saved[FRAME_RIP]) || (saved[FRAME_RSP] != own->rsp && !parked_rsp)) {
		close(fd);
		errno = ESRCH;
		return -1;
	}
	struct user_regs_struct r = *own;
	if ((int64_t)r.orig_rax >= 0) {
		switch ((int64_t)r.rax) {
		case -512: /* ERESTARTSYS */
		case -513: /* ERESTARTNOINTR */
			r.rax = r.orig_rax;
			r.rip -= 2;
			break;
		case -514: /* ERESTARTNOHAND */
		case -516: /* ERESTART_RESTARTBLOCK */
			r.rax = (uint64_t)-EINTR;
			break;
		}
	}
	uint64_t sc[FRAME_WORDS] = { r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rdi, r.rsi, r.rbp, r.rbx, r.rdx, r.rax, r.rcx, r.rsp, r.rip, r.eflags };
	ssize_t n = pwrite(fd, sc, sizeof sc, (off_t)(rsp + FRAME_MCONTEXT));
	close(fd);
	return n == (ssize_t)sizeof sc ? 0 : -1;
}

/*
 * The table says our registers may be loaded (DIRTY is written just before
 * they are, and cleared just after the task's own are back, so vjail may
 * have died on either side of the change): put the task's own back, in its
 * registers or, if a signal was delivered on ours, in the handler's frame.
 * A task that already has its own registers is left as it is.
 */
static void put_back(struct guard_task *t)
{
	const struct user_regs_struct *own = (const struct user_regs_struct *)t->regs;
	struct user_regs_struct cur;
	struct iovec iov = { &cur, sizeof cur };
	if (ptrace(PTRACE_GETREGSET, t->tid, (void *)NT_PRSTATUS, &iov)) {
		say(errno, "cannot read the registers of task %d", t->tid);
		return;
	}
	if (!memcmp(&cur, own, sizeof cur))
		return; /* never changed, or already put back */
	if (!at_ours(t, cur.rip)) {
		if (fix_frame(t->tid, cur.rsp, t, own))
			say(errno == ESRCH ? 0 : errno, "cannot put back the registers of task %d in its signal frame%s", t->tid,
			    errno == ESRCH ? " (no frame of a signal delivered on the registers vjail had loaded: left as it is)" : "");
		return;
	}
	iov = (struct iovec){ t->regs, sizeof t->regs };
	if (ptrace(PTRACE_SETREGSET, t->tid, (void *)NT_PRSTATUS, &iov))
		say(errno, "cannot put back the registers of task %d", t->tid);
}

/*
 * vjail died holding a signal it had taken from the task at a delivery stop:
 * the kernel drops such a signal when the tracer goes. Unless it was handed
 * back and delivered already (the task is then in its handler, elsewhere
 * than where the signal was to be handed back), it is due again.
 */
static int signal_due(const struct guard_task *t)
{
	if (!t->signal)
		return 0;
	struct user_regs_struct cur;
	struct iovec iov = { &cur, sizeof cur };
	return ptrace(PTRACE_GETREGSET, t->tid, (void *)NT_PRSTATUS, &iov) == 0 && cur.rip == t->signal_rip;
}

/*
 * Deliver a signal vjail held as the kernel would have: queue it again, let
 * the task (its own registers and mask back, its cgroup thawed) run to the
 * delivery stop, put the original siginfo back there and detach with the
 * signal. Other signals due first are delivered on the way.
 */
static void deliver_again(struct guard_task *t)
{
	if (syscall(SYS_tkill, t->tid, t->signal)) {
		say(errno, "signal %d of task %d was lost: cannot send it again", t->signal, t->tid);
		ptrace(PTRACE_DETACH, t->tid, 0L, 0L);
		return;
	}
	int64_t until = now_ms() + 5000;
	ptrace(PTRACE_CONT, t->tid, 0L, 0L);
	for (;;) {
		int st;
		pid_t r = waitpid(t->tid, &st, __WALL | WNOHANG);
		if (r < 0 || (r > 0 && !WIFSTOPPED(st)))
			return; /* ended */
		if (r == 0) {
			if (now_ms() > until) {
				say(0, "signal %d of task %d sent again, but not delivered within 5 s: its siginfo is the guard's", t->signal, t->tid);
				/* Stop it to detach; bounded too: if it does not stop, the guard's exit lets it go. */
				ptrace(PTRACE_INTERRUPT, t->tid, 0L, 0L);
				for (int64_t stop_by = now_ms() + 2000; waitpid(t->tid, &st, __WALL | WNOHANG) == 0 && now_ms() < stop_by;)
					nap();
				ptrace(PTRACE_DETACH, t->tid, 0L, 0L);
				return;
			}
			nap();
			continue;
		}
		int sig = EVENT(st) == 0 ? WSTOPSIG(st) : 0;
		if (sig == t->signal) {
			if (ptrace(PTRACE_SETSIGINFO, t->tid, 0L, t->siginfo))
				say(errno, "signal %d of task %d delivered again with the guard's siginfo, not its own", t->signal, t->tid);
			ptrace(PTRACE_DETACH, t->tid, 0L, (long)sig);
			say(0, "signal %d of task %d, held by vjail when it died, delivered again with its own siginfo", t->signal, t->tid);
			return;
		}
		ptrace(PTRACE_CONT, t->tid, 0L, (long)sig);
	}
}

/* The mask vjail loads to hold signals, as the kernel keeps it (SIGKILL and SIGSTOP cannot be blocked). */
#define ALL_BLOCKED (~0ULL & ~((1ULL << (SIGKILL - 1)) | (1ULL << (SIGSTOP - 1))))

/*
 * The task's own signal mask back, if it still has the one vjail loaded. A
 * task the kernel let go before the guard came (vjail died without its exit
 * stop) ran its own code meanwhile, and that code may have set a mask of its
 * own: returning from a signal handler, for one, restores the mask its frame
 * saved, not the one noted while the handler ran (the handled signal
 * blocked). Its mask is then its own already; putting the noted one back
 * would keep that signal blocked for good. (Only a task that itself blocks
 * every signal in that moment is taken for one still holding vjail's.)
 */
static void put_back_mask(const struct guard_task *t)
{
	uint64_t now = 0;
	if (ptrace(PTRACE_GETSIGMASK, t->tid, (void *)sizeof now, &now)) {
		say(errno, "cannot read the signal mask of task %d", t->tid);
		return;
	}
	if (now != ALL_BLOCKED)
		return;
	if (ptrace(PTRACE_SETSIGMASK, t->tid, (void *)sizeof t->mask, &t->mask))
		say(errno, "cannot put back the signal mask of task %d", t->tid);
}

/* Wait (up to 5 s) for the interrupt stop of a task seized again; a signal due first is delivered on its own registers. */
static int fix_task(struct guard_task *t)
{
	int64_t until = now_ms() + 5000;
	for (;;) {
		int st;
		pid_t r = waitpid(t->tid, &st, __WALL | WNOHANG);
		if (r < 0)
			return -1;
		if (r == 0) {
			if (now_ms() > until)
				return -1;
			nap();
			continue;
		}
		if (!WIFSTOPPED(st))
			return -1; /* ended */
		if (t->flags & GUARD_DIRTY) {
			put_back(t);
			t->flags &= ~GUARD_DIRTY;
		}
		if (EVENT(st) == PTRACE_EVENT_STOP)
			break;
		/* A signal-delivery stop: deliver it (now on the task's own registers); our interrupt stop follows. */
		ptrace(PTRACE_CONT, t->tid, 0L, (long)(EVENT(st) == 0 ? WSTOPSIG(st) : 0));
	}
	int due = signal_due(t);
	if (t->flags & GUARD_MASK)
		put_back_mask(t);
	if (due)
		t->flags |= GUARD_RESEND; /* kept stopped: delivered once the cgroup is thawed */
	else
		ptrace(PTRACE_DETACH, t->tid, 0L, 0L);
	return 0;
}

/* vjail stops at its exit (`stopped`), or is gone: let every task it held go as it was. */
static void rescue(int stopped)
{
	if (read_table()) {
		say(errno, "cannot read vjail's table of held tasks");
		ptrace(PTRACE_DETACH, vjail, 0L, 0L);
		return;
	}
	set_frozen(1);
	if (stopped)
		ptrace(PTRACE_DETACH, vjail, 0L, 0L);
	int held = 0;
	for (int i = 0; i < table.ntasks; i++) {
		struct guard_task *t = &table.tasks[i];
		if (!(t->flags & GUARD_HELD))
			continue;
		/* EPERM until the dying vjail has let go of it. */
		int64_t until = now_ms() + 5000;
		while (ptrace(PTRACE_SEIZE, t->tid, 0L, 0L)) {
			if (errno != EPERM || now_ms() > until) {
				/* Gone (ESRCH) is fine; anything else leaves it as vjail had it: say so. */
				if (errno != ESRCH)
					say(errno, "task %d could not be attached again (vjail's registers or mask may be left in it)", t->tid);
				t->flags = 0;
				break;
			}
			nap();
		}
		if (t->flags && ptrace(PTRACE_INTERRUPT, t->tid, 0L, 0L)) {
			say(errno, "task %d could not be stopped again (vjail's registers or mask may be left in it)", t->tid);
			t->flags = 0;
		}
		held += t->flags != 0;
	}
	/* cgroup v1: a frozen task takes the interrupt stop only once thawed, before it runs code of its own. */
	if (table.cgroup_kind == 1)
		set_frozen(0);
	for (int i = 0; i < table.ntasks; i++)
		if (table.tasks[i].flags && fix_task(&table.tasks[i]))
			say(0, "task %d could not be put back (gone, or it did not stop within 5 s)", table.tasks[i].tid);
	if (table.cgroup_kind == 2)
		set_frozen(0);
	for (int i = 0; i < table.ntasks; i++)
		if (table.tasks[i].flags & GUARD_RESEND)
			deliver_again(&table.tasks[i]);
	fprintf(stderr, "vjail-guard: vjail died during a checkpoint; %d task(s) of the jail put back as they were%s%s\n", held,
		table.cgroup_kind ? " and its cgroup thawed" : "",
		stopped ? "" : " (the kernel let go of them before the guard could: meanwhile they were parked, or ran with every signal blocked)");
}

/* One stop of vjail's main thread; returns 1 when the guard's work is over. */
static int on_stop(int st, int releasing)
{
	if (!WIFSTOPPED(st)) {
		/* vjail is gone without its exit stop: the kernel let go of its tasks as vjail had them (parked, or masked). */
		if (!releasing)
			rescue(0);
		return 1;
	}
	int sig = WSTOPSIG(st);
	switch (EVENT(st)) {
	case PTRACE_EVENT_EXIT:
		rescue(1);
		return 1;
	case PTRACE_EVENT_STOP:
		if (releasing) {
			ptrace(PTRACE_DETACH, vjail, 0L, 0L);
			return 1;
		}
		if (sig != SIGTRAP)
			ptrace(PTRACE_LISTEN, vjail, 0L, 0L); /* group stop: stay stopped */
		else
			ptrace(PTRACE_CONT, vjail, 0L, 0L);
		return 0;
	case 0:
		/* A signal for vjail: pass it on (and let go if we are done). */
		ptrace(releasing ? PTRACE_DETACH : PTRACE_CONT, vjail, 0L, (long)sig);
		return releasing;
	default:
		ptrace(PTRACE_CONT, vjail, 0L, 0L);
		return 0;
	}
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: vjail-guard PID TABLE-FD\n");
		return 2;
	}
	vjail = (pid_t)atoi(argv[1]);
	shared = mmap(NULL, sizeof(struct guard_table), PROT_READ, MAP_SHARED, atoi(argv[2]), 0);
	if (shared == MAP_FAILED) {
		printf("error: cannot map vjail's table (fd %s): %s\n", argv[2], strerror(errno));
		return 1;
	}
	/* It can write vjail's memory: no process of the jail may write its own. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	/* A Ctrl-C reaches the whole process group: the guard must outlive vjail. */
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGQUIT, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0 || ptrace(PTRACE_SEIZE, vjail, 0L, (long)PTRACE_O_TRACEEXIT)) {
		printf("error: cannot trace vjail (process %d): %s\n", vjail, strerror(errno));
		return 1;
	}
	printf("ok\n");
	fflush(stdout);
	int releasing = 0, input = 1;
	for (;;) {
		int st;
		pid_t r = waitpid(vjail, &st, __WALL | WNOHANG);
		if (r < 0) {
			if (!releasing)
				say(errno, "lost track of vjail (process %d)", vjail);
			return 0;
		}
		if (r > 0) {
			if (on_stop(st, releasing))
				return 0;
			continue;
		}
		struct pollfd p[2] = { { sfd, POLLIN, 0 }, { input ? 0 : -1, POLLIN, 0 } };
		if (poll(p, 2, releasing ? 100 : -1) < 0 && errno != EINTR)
			return 1;
		struct signalfd_siginfo si;
		while (read(sfd, &si, sizeof si) > 0) {
		}
		if (p[1].revents) {
			char c = 0;
			ssize_t n = read(0, &c, 1);
			if (n <= 0)
				input = 0; /* vjail is going away: its exit stop follows */
			else if (c == 'd' && !releasing) {
				releasing = 1;
				ptrace(PTRACE_INTERRUPT, vjail, 0L, 0L);
			}
		}
	}
}
