/*
 * vjail-init: the launcher. The supervisor spawns it with the control socket
 * as fd 3; it forks the workload, which installs the seccomp filter (with a
 * user-notify listener) and execs the command. vjail-init stays behind as the
 * jail's reaper (a child subreaper, or PID 1's parent with --pid-ns) and
 * kills the whole jail if the supervisor dies, so nothing runs on unsupervised.
 * Once the workload is forked, vjail-init (and PID 1) lock themselves down
 * (lockdown.h): the workload can neither trace them nor make them run
 * anything its policy denies.
 *
 * usage: vjail-init --parent PID [--pid-ns] [--cgroup DIR] [--bind SRC:DST]... [--time-offsets MONO_NS:BOOT_NS] [--layout PLAN] [--pass-fd | --preserve-fds N]
 *                   [--uid-map MAP --gid-map MAP [--newidmap]] [--ambient-caps] -- CMD [ARG...]
 *
 * --bind mounts file SRC read-only over DST in the jail's own mount namespace
 * (how a profile presents /proc/version and the kernel sysctl files).
 *
 * --pid-ns also gives the jail its own IPC namespace (System V shared memory,
 * semaphores, message queues); both need CAP_SYS_ADMIN.
 *
 * --layout is a container setup plan (setup_plan.h): "ns uts" and "ns network"
 * give the jail new UTS and network namespaces (the hostname set, only the
 * loopback interface, up); "rootfs DIR" with its mounts and devices makes DIR
 * the jail's root as a container's (implies --pid-ns; the kernel files of
 * --bind are mounted inside it).
 *
 * --preserve-fds N hands fds 5..5+N-1 to the command as its fds 3..3+N-1
 * (an OCI runtime's --preserve-fds: socket activation), and closes ours.
 *
 * --time-offsets starts the jail in a new time namespace whose monotonic and
 * boot-time clocks are ahead by those nanoseconds (a restore on a host whose
 * clocks are behind the checkpoint's).
 *
 * --uid-map and --gid-map ("INSIDE:OUTSIDE:COUNT,...") first move vjail-init
 * into a new user namespace with those maps (written by newuidmap/newgidmap
 * with --newidmap); every namespace above is then that one's, so they need
 * no privilege outside it. --ambient-caps lets the workload keep
 * vjail-init's capabilities in it across exec whatever its UID (restore's
 * restorer, which needs them to choose PIDs).
 *
 * It is exec'd (not forked from Node's threaded process), so plain libc is fine.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lockdown.h"
#include "protocol.h"
#include "setup_plan.h"
#include "timens.h"
#include "userns.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

#define MAX_BINDS 16

struct options {
	pid_t parent;
	int pid_ns;
	const char *cgroup;
	char *binds[MAX_BINDS]; /* "SRC:DST" */
	int nbinds;
	const char *time_offsets; /* "MONO_NS:BOOT_NS" */
	int pass_fd; /* fd VJAIL_PASS_FD is the workload's alone */
	int preserved; /* fds VJAIL_PRESERVED_FD.. become the workload's 3.. */
	const char *layout; /* --layout's text, parsed into plan */
	struct setup_plan *plan; /* NULL without --layout */
	struct user_ns_maps user_ns; /* uid_map NULL: no user namespace */
	int ambient_caps;
	char **argv;
};

/* Set from the SIGUSR2 handler: the supervisor died (PR_SET_PDEATHSIG) or asked us to end the jail. */
static volatile sig_atomic_t kill_requested;

static void on_kill_request(int sig)
{
	(void)sig;
	kill_requested = 1;
}

/* The control socket: VJAIL_CTL_FD, except in a workload whose preserved fds took that number. */
static int ctl_fd = VJAIL_CTL_FD;

static void ctl_send(enum ctl_type type, int a, long long b)
{
	struct ctl_msg m = { .type = type, .a = a, .b = b };
	ssize_t r;
	do
		r = send(ctl_fd, &m, sizeof m, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
}

static _Noreturn void fail(enum ctl_step step, int err)
{
	ctl_send(CTL_SETUP_FAILED, err, step);
	_exit(126);
}

static int parse_options(int argc, char **argv, struct options *o)
{
	memset(o, 0, sizeof *o);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--parent") && i + 1 < argc)
			o->parent = (pid_t)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--pid-ns"))
			o->pid_ns = 1;
		else if (!strcmp(argv[i], "--cgroup") && i + 1 < argc)
			o->cgroup = argv[++i];
		else if (!strcmp(argv[i], "--bind") && i + 1 < argc && o->nbinds < MAX_BINDS && strchr(argv[i + 1], ':'))
			o->binds[o->nbinds++] = argv[++i];
		else if (!strcmp(argv[i], "--time-offsets") && i + 1 < argc)
			o->time_offsets = argv[++i];
		else if (!strcmp(argv[i], "--layout") && i + 1 < argc)
			o->layout = argv[++i];
		else if (!strcmp(argv[i], "--pass-fd") && !o->preserved)
			o->pass_fd = 1;
		else if (!strcmp(argv[i], "--preserve-fds") && i + 1 < argc && !o->pass_fd) {
			o->preserved = atoi(argv[++i]);
			if (o->preserved < 0 || o->preserved > 1024)
				return -1;
		}
		else if (!strcmp(argv[i], "--uid-map") && i + 1 < argc)
			o->user_ns.uid_map = argv[++i];
		else if (!strcmp(argv[i], "--gid-map") && i + 1 < argc)
			o->user_ns.gid_map = argv[++i];
		else if (!strcmp(argv[i], "--newidmap"))
			o->user_ns.writer = IDMAP_NEWIDMAP;
		else if (!strcmp(argv[i], "--ambient-caps"))
			o->ambient_caps = 1;
		else if (!strcmp(argv[i], "--") && i + 1 < argc) {
			o->argv = &argv[i + 1];
			return !o->user_ns.uid_map != !o->user_ns.gid_map ? -1 : 0;
		} else
			return -1;
	}
	return -1;
}

/* Everything a child of Node may inherit that a normal program does not expect. */
static void reset_signals(void)
{
	struct sigaction sa = { .sa_handler = SIG_DFL };
	sigset_t all;
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			sigaction(s, &sa, NULL);
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
}

static int read_filter(struct sock_fprog *prog)
{
	static struct sock_filter insns[BPF_MAXINSNS];
	ssize_t n;
	do
		n = recv(VJAIL_CTL_FD, insns, sizeof insns, 0);
	while (n < 0 && errno == EINTR);
	if (n <= 0 || n % (ssize_t)sizeof insns[0])
		return -1;
	prog->len = (unsigned short)(n / (ssize_t)sizeof insns[0]);
	prog->filter = insns;
	return 0;
}

static void join_cgroup(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/cgroup.procs", dir);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, "0", 1) != 1)
		fail(STEP_CGROUP, errno);
	close(fd);
}

/*
 * fork() straight into the cgroup DIR (clone3 with CLONE_INTO_CGROUP, Linux
 * 5.7, cgroup v2): a write to cgroup.procs after the fork takes the cgroup
 * core's process-wide lock for writing, which waits for an RCU grace period
 * (milliseconds, tens of them on a loaded machine). Sets *joined when the
 * child was born in DIR; where that cannot be done (a v1 hierarchy, an older
 * kernel) it is a plain fork and the child joins DIR itself.
 */
static pid_t fork_into(const char *dir, int *joined)
{
	*joined = 0;
	if (dir) {
		int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0) {
			struct clone_args args;
			memset(&args, 0, sizeof args);
			args.flags = CLONE_INTO_CGROUP;
			args.exit_signal = SIGCHLD;
			args.cgroup = (unsigned long long)fd;
			long pid = syscall(SYS_clone3, &args, sizeof args);
			int err = errno;
			close(fd);
			if (pid >= 0) {
				*joined = 1;
				return (pid_t)pid;
			}
			errno = err;
		}
	}
	return fork();
}

/* Bind each SRC read-only over DST under root ("" for /). The caller is already in the jail's own mount namespace. */
static void apply_binds(const struct options *o, const char *root)
{
	for (int i = 0; i < o->nbinds; i++) {
		char *sep = strchr(o->binds[i], ':');
		*sep = 0;
		const char *src = o->binds[i];
		char dst[4096];
		snprintf(dst, sizeof dst, "%s%s", root, sep + 1);
		if (mount(src, dst, NULL, MS_BIND, NULL) ||
		    mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
			fail(STEP_BIND, errno);
		*sep = ':';
	}
}

/* A mount namespace of the jail's own, where nothing propagates back to the host. */
static void private_mount_ns(void)
{
	if (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		fail(STEP_BIND, errno);
}

/* The namespaces --layout asks for beyond the PID, mount and IPC ones: UTS and network. */
static int isolation_flags(const struct options *o)
{
	int flags = 0;
	if (!o->plan)
		return 0;
	PLAN_EACH(o->plan, "ns", l)
	{
		flags |= plan_ns_flag(plan_field(l, 1)) & (CLONE_NEWUTS | CLONE_NEWNET);
	}
	return flags;
}

/* In the new UTS and network namespaces (created with `flags`): the host name, the loopback interface up. */
static void configure_isolation(const struct options *o, int flags)
{
	char why[512];
	const char *name = o->plan ? plan_get(o->plan, "hostname") : NULL;
	if ((flags & CLONE_NEWUTS) && name && sethostname(name, strlen(name)))
		fail(STEP_ISOLATE, errno);
	if ((flags & CLONE_NEWNET) && plan_loopback_up(why, sizeof why))
		fail(STEP_ISOLATE, errno);
}

/*
 * --layout's root file system, as a container's: bound onto itself, its mounts
 * (a /proc of the jail's PID namespace among them) and devices, the profile's
 * kernel files inside it, then pivot_root. The caller is PID 1 of the jail, in
 * its own private mount namespace.
 */
static void enter_rootfs(const struct options *o, const char *rootfs)
{
	char why[1024]; /* the supervisor hears the step and errno (vjail-oci-setup prints `why`) */
	if (mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL) || plan_build_root(o->plan, rootfs, why, sizeof why))
		fail(STEP_ROOTFS, errno);
	apply_binds(o, rootfs);
	if (plan_pivot(rootfs, why, sizeof why) || plan_finish_root(o->plan, why, sizeof why))
		fail(STEP_ROOTFS, errno);
}

/* Send the workload's pidfd, telling the supervisor which fd number the listener will get. */
static void send_hello(void)
{
	int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	if (pidfd < 0)
		fail(STEP_PIDFD_OPEN, errno);
	struct ctl_msg m = { .type = CTL_HELLO, .a = pidfd };
	struct iovec iov = { .iov_base = &m, .iov_len = sizeof m };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &pidfd, sizeof pidfd);
	if (sendmsg(ctl_fd, &mh, MSG_NOSIGNAL) < 0)
		fail(STEP_PIDFD_OPEN, errno);
	/* The lowest free fd is now the pidfd's number: the listener will get it. */
	close(pidfd);
}

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/*
 * The workload gets fds 0-2 and nothing else of ours: any other descriptor
 * a caller leaked into vjail (a shell's, a test runner's channel) would be
 * a way out of the jail and state a checkpoint could not save. Everything
 * above 2 is marked close-on-exec; with --pass-fd, that one is kept.
 */
static void close_inherited(const struct options *o)
{
	if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
		DIR *d = opendir("/proc/self/fd");
		struct dirent *e;
		while (d && (e = readdir(d))) {
			int fd = atoi(e->d_name);
			if (fd > 2 && fd != dirfd(d))
				fcntl(fd, F_SETFD, FD_CLOEXEC);
		}
		if (d)
			closedir(d);
	}
	if (o->pass_fd)
		fcntl(VJAIL_PASS_FD, F_SETFD, 0);
}

/*
 * --preserve-fds: the control socket moves above them (close-on-exec), then
 * each preserved fd to its place from 3 (dup2 leaves it open across exec)
 * and the sources left over are closed. Before the hello: the listener's fd
 * number is the lowest free one then.
 */
static void hand_over_preserved(const struct options *o)
{
	if (!o->preserved)
		return;
	int ctl = fcntl(VJAIL_CTL_FD, F_DUPFD_CLOEXEC, VJAIL_PRESERVED_FD + o->preserved);
	if (ctl < 0)
		fail(STEP_PRESERVE_FDS, errno);
	ctl_fd = ctl;
	for (int i = 0; i < o->preserved; i++)
		if (dup2(VJAIL_PRESERVED_FD + i, 3 + i) < 0)
			fail(STEP_PRESERVE_FDS, errno);
	/* Left above the last target: sources, and fd 4 (unused with --preserve-fds). */
	for (int fd = 3 + o->preserved; fd < VJAIL_PRESERVED_FD + o->preserved; fd++)
		close(fd);
}

/* Our copies of the preserved fds: the workload's alone. */
static void close_preserved(const struct options *o)
{
	for (int i = 0; i < o->preserved; i++)
		close(VJAIL_PRESERVED_FD + i);
}

/* The process group vjail-init was started in (the supervisor's, and the terminal's foreground one). */
static pid_t caller_group;

static _Noreturn void exec_workload(const struct options *o, struct sock_fprog *prog, int in_cgroup)
{
	reset_signals();
	/* Back in the caller's group (terminal signals reach the workload as before); we stay out of it. */
	if (caller_group > 0)
		setpgid(0, caller_group);
	for (int fd = 0; fd <= 2; fd++)
		fcntl(fd, F_SETFD, 0); /* Node marks 0-2 close-on-exec */
	close_inherited(o);
	if (o->cgroup && !o->pid_ns && !in_cgroup)
		join_cgroup(o->cgroup);
	if (o->nbinds && !o->pid_ns) {
		private_mount_ns();
		apply_binds(o, "");
	}
	int isolate = o->pid_ns ? 0 : isolation_flags(o);
	if (isolate) {
		if (unshare(isolate))
			fail(STEP_ISOLATE, errno);
		configure_isolation(o, isolate);
	}
	hand_over_preserved(o);
	/* Before the hello: the supervisor, told, waits only for the filter's installation. */
	if (o->ambient_caps) {
		int err = raise_ambient_caps();
		if (err)
			fail(STEP_AMBIENT_CAPS, err);
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		fail(STEP_NO_NEW_PRIVS, errno);
	send_hello();
	int listener = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, prog);
	if (listener < 0)
		fail(STEP_SECCOMP, errno);
	/* Blocks until the supervisor has fetched the listener and answers 0. */
	if (prctl(VJAIL_HANDSHAKE_PRCTL, 0, 0, 0, 0) != 0)
		_exit(126);
	close(listener);
	execvp(o->argv[0], o->argv);
	int err = errno;
	ctl_send(CTL_EXEC_FAILED, err, 0);
	_exit(err == ENOENT ? 127 : 126);
}

/* The signal mask while waiting: SIGUSR2 (end the jail) and SIGCHLD are
 * blocked except inside sigsuspend, so a request that arrives between two
 * checks is never lost. */
static sigset_t wait_mask;

static void on_child(int sig)
{
	(void)sig; /* only to wake sigsuspend */
}

/* Reap every child that has ended; returns 1 when none is left. */
static int reap_ended(pid_t watched, int *watched_status)
{
	for (;;) {
		int st;
		pid_t p = waitpid(-1, &st, WNOHANG | __WALL);
		if (p > 0 && p == watched)
			*watched_status = st;
		if (p > 0)
			continue;
		return p < 0 && errno == ECHILD;
	}
}

/* Fork the workload, then reap every process of the jail until none is left.
 * Returns the workload's raw wait status, or -1 when a kill was requested. */
static int reap_jail(const struct options *o, struct sock_fprog *prog)
{
	/* The workload waits at this gate until we are locked down: none of its code runs before. */
	int gate[2];
	if (pipe2(gate, O_CLOEXEC))
		fail(STEP_FORK, errno);
	/* With --pid-ns, PID 1 (which runs this) has joined the cgroup already. */
	int in_cgroup;
	pid_t workload = fork_into(o->pid_ns ? NULL : o->cgroup, &in_cgroup);
	if (workload < 0)
		fail(STEP_FORK, errno);
	if (workload == 0) {
		char c;
		close(gate[1]);
		while (read(gate[0], &c, 1) < 0 && errno == EINTR)
			;
		close(gate[0]);
		exec_workload(o, prog, in_cgroup);
	}
	close(gate[0]);
	if (o->pass_fd)
		close(VJAIL_PASS_FD);
	close_preserved(o);
	int err = lock_down();
	if (err) {
		kill(workload, SIGKILL);
		fail(STEP_LOCKDOWN, err);
	}
	close(gate[1]);
	int workload_status = 0;
	for (;;) {
		if (reap_ended(workload, &workload_status))
			return workload_status;
		if (kill_requested)
			return -1;
		sigsuspend(&wait_mask);
	}
}

/* Parse the parent pid out of /proc/PID/stat ("pid (comm) state ppid ..."). */
static pid_t parent_of(const char *pid)
{
	char path[300], buf[512];
	snprintf(path, sizeof path, "/proc/%s/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	char *close_paren = strrchr(buf, ')');
	int ppid;
	if (!close_paren || sscanf(close_paren + 1, " %*c %d", &ppid) != 1)
		return -1;
	return ppid;
}

/* SIGKILL every descendant. As a child subreaper, orphans of the jail are
 * re-parented to us, so "descendant" is exact; repeat until none is found
 * (a process may fork between our scan and its death). */
static void kill_descendants(void)
{
	enum { MAX = 1 << 16 };
	static pid_t pids[MAX], parents[MAX];
	for (int round = 0; round < 1000; round++) {
		int n = 0, killed = 0;
		DIR *d = opendir("/proc");
		if (!d)
			return;
		struct dirent *e;
		while ((e = readdir(d)) && n < MAX) {
			if (e->d_name[0] < '1' || e->d_name[0] > '9')
				continue;
			pids[n] = atoi(e->d_name);
			parents[n] = parent_of(e->d_name);
			n++;
		}
		closedir(d);
		/* Mark descendants by repeated passes: a pid is ours if its parent is ours. */
		static unsigned char ours[MAX];
		memset(ours, 0, sizeof ours);
		for (int changed = 1; changed;) {
			changed = 0;
			for (int i = 0; i < n; i++) {
				if (ours[i])
					continue;
				int mine = parents[i] == getpid();
				for (int j = 0; !mine && j < n; j++)
					mine = ours[j] && pids[j] == parents[i];
				if (mine)
					ours[i] = changed = 1;
			}
		}
		for (int i = 0; i < n; i++)
			if (ours[i] && kill(pids[i], SIGKILL) == 0)
				killed++;
		while (waitpid(-1, NULL, WNOHANG | __WALL) > 0)
			;
		if (!killed)
			return;
	}
}

static int exit_code_of(int status)
{
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

static void watch_supervisor(pid_t parent)
{
	struct sigaction sa = { .sa_handler = on_kill_request };
	sigaction(SIGUSR2, &sa, NULL);
	struct sigaction child = { .sa_handler = on_child, .sa_flags = SA_NOCLDSTOP };
	sigaction(SIGCHLD, &child, NULL);
	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR2);
	sigaddset(&block, SIGCHLD);
	sigprocmask(SIG_BLOCK, &block, &wait_mask);
	sigdelset(&wait_mask, SIGUSR2);
	sigdelset(&wait_mask, SIGCHLD);
	prctl(PR_SET_PDEATHSIG, SIGUSR2, 0, 0, 0);
	if (parent && getppid() != parent)
		kill_requested = 1; /* it died before we could watch it */
}

/* With --time-offsets: the children we create from now on are in a new time namespace. */
static void enter_time_ns(const struct options *o)
{
	if (!o->time_offsets)
		return;
	int err = enter_time_ns_for_children(o->time_offsets);
	if (err)
		fail(STEP_TIME_NS, err);
}

/* With --pid-ns: we stay outside; our child is PID 1 of the new namespace.
 * The jail also gets an IPC namespace of its own: its System V objects are
 * then all its own, and a checkpoint can save every one of them. */
static int run_in_pid_ns(const struct options *o, struct sock_fprog *prog)
{
	int isolate = isolation_flags(o);
	if (unshare(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | isolate))
		fail(STEP_UNSHARE, errno);
	enter_time_ns(o);
	pid_t init = fork();
	if (init < 0)
		fail(STEP_FORK, errno);
	if (init == 0) {
		/* If we (its parent) die, PID 1 dies and the kernel kills the namespace. */
		prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
		if (o->cgroup)
			join_cgroup(o->cgroup);
		configure_isolation(o, isolate);
		const char *rootfs = o->plan ? plan_get(o->plan, "rootfs") : NULL;
		if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
			fail(STEP_MOUNT_PROC, errno);
		if (rootfs) {
			enter_rootfs(o, rootfs);
		} else {
			if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
				fail(STEP_MOUNT_PROC, errno);
			apply_binds(o, ""); /* over the namespace's own /proc */
		}
		int st = reap_jail(o, prog);
		ctl_send(CTL_EXIT, st, 0);
		_exit(exit_code_of(st));
	}
	if (o->pass_fd)
		close(VJAIL_PASS_FD);
	close_preserved(o);
	int err = lock_down();
	if (err) {
		kill(init, SIGKILL);
		fail(STEP_LOCKDOWN, err);
	}
	for (;;) {
		int st = 0;
		int gone = reap_ended(init, &st);
		if (gone)
			return exit_code_of(st);
		if (kill_requested) {
			kill(init, SIGKILL);
			while (waitpid(init, &st, 0) < 0 && errno == EINTR)
				;
			return 128 + SIGKILL;
		}
		sigsuspend(&wait_mask);
	}
}

int main(int argc, char **argv)
{
	struct options o;
	if (parse_options(argc, argv, &o)) {
		fprintf(stderr, "usage: vjail-init --parent PID [--pid-ns] [--cgroup DIR] [--bind SRC:DST]... [--time-offsets MONO_NS:BOOT_NS] [--layout PLAN] [--pass-fd | --preserve-fds N]"
				" [--uid-map MAP --gid-map MAP [--newidmap]] [--ambient-caps] -- CMD [ARG...]\n");
		return 2;
	}
	/* The plan is parsed in place, in a copy: argv stays as given (ps shows it). */
	static struct setup_plan plan;
	if (o.layout) {
		char *text = strdup(o.layout);
		if (!text)
			return 2;
		plan_parse(&plan, text);
		o.plan = &plan;
		if (plan_get(&plan, "rootfs"))
			o.pid_ns = 1; /* a container's /proc is its own PID namespace's */
	}
	reset_signals();
	/* First, since every namespace made below belongs to the user namespace its maker is in. */
	if (o.user_ns.uid_map) {
		int err = enter_user_ns(&o.user_ns);
		if (err)
			fail(STEP_USER_NS, err < 0 ? EPERM : err);
	}
	/* A group of our own: kill(0) in the jail, which reaches the supervisor, does not reach us,
	 * and we end the jail when the supervisor dies. (With --pid-ns, PID 1 ends the jail when we
	 * die, and the workload could not name the caller's group from inside the namespace.) */
	if (!o.pid_ns) {
		caller_group = getpgrp();
		if (setpgid(0, 0))
			caller_group = 0;
	}
	watch_supervisor(o.parent);
	/* Terminal signals go to the whole foreground group; the workload gets
	 * them itself, and we must outlive it to reap it. */
	signal(SIGINT, SIG_IGN);
	signal(SIGQUIT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

	struct sock_fprog prog;
	if (read_filter(&prog))
		fail(STEP_READ_FILTER, EINVAL);

	if (o.pid_ns)
		return run_in_pid_ns(&o, &prog);

	enter_time_ns(&o);
	int st = reap_jail(&o, &prog);
	if (st < 0) {
		kill_descendants();
		return 128 + SIGKILL;
	}
	ctl_send(CTL_EXIT, st, 0);
	return exit_code_of(st);
}
