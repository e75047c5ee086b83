/*
 * vjail-run: `vjail run` without starting Node. bin/vjail.js execs it as
 *
 *   vjail-run SCRIPT ARG...      (SCRIPT: bin/vjail.js, for the fall-back)
 *
 * It launches vjail-init itself, as the Node CLI does (same parent, session,
 * process group, terminal, environment, cwd and stdio), and asks the user's
 * resident supervisor (src/resident/, started on demand) for the filter and
 * to answer the jail's notifications. Anything it does not handle exactly as
 * the Node CLI does (other commands and flags, a bad option, a failed setup
 * before the workload ran, no resident) it hands to `node SCRIPT ARG...`.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fdrecv.h"
#include "protocol.h"
#include "resident_proto.h"

extern char **environ;

static char **g_argv; /* our own argv: argv[1] is the script */
static int g_argc;
static int g_stats; /* --stats: say why the resident did not serve the jail */

/*
 * Hand the whole command line to the Node CLI. With --stats, say why first:
 * the table that follows is then the Node CLI's supervisor's, not the resident's.
 */
static _Noreturn void fall_back(const char *why)
{
	if (g_stats && why)
		fprintf(stderr, "vjail: not served by the resident supervisor (%s): the Node CLI runs the jail\n", why);
	char **args = calloc((size_t)g_argc + 1, sizeof *args);
	if (args) {
		args[0] = "node";
		for (int i = 1; i < g_argc; i++)
			args[i] = g_argv[i];
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGQUIT, SIG_DFL);
		execvp("node", args);
	}
	fprintf(stderr, "vjail: cannot run node: %s\n", strerror(errno));
	_exit(127);
}

/* ---- options ------------------------------------------------------------ */

struct options {
	const char *profile, *policy, *emulate, *kernel_files, *receiver, *spin;
	const char *rootfs, *net, *hostname; /* src/isolation.ts: the resident makes them vjail-init's --layout */
	int pid_ns;
	int stats; /* --stats: the resident sends the table the Node CLI prints */
	char **command;
};

static int one_of(const char *v, const char *a, const char *b, const char *c)
{
	return !strcmp(v, a) || !strcmp(v, b) || !strcmp(v, c);
}

/* The value of `--name V` or `--name=V` at argv[*i]; NULL if argv[*i] is not that option. */
static const char *option_value(char **argv, int argc, int *i, const char *name, int *bad)
{
	size_t n = strlen(name);
	const char *a = argv[*i];
	if (strncmp(a, name, n))
		return NULL;
	if (a[n] == '=')
		return a + n + 1;
	if (a[n] != '\0')
		return NULL;
	if (*i + 1 >= argc || argv[*i + 1][0] == '-') {
		*bad = 1; /* commander's message for a missing value */
		return NULL;
	}
	return argv[++*i];
}

/* `run [options] [--] CMD...` with only the flags this front end supports; else 0. */
static int parse(int argc, char **argv, struct options *o)
{
	if (argc < 1 || strcmp(argv[0], "run"))
		return 0;
	memset(o, 0, sizeof *o);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int bad = 0;
		const char *v;
		if (!strcmp(a, "--")) {
			o->command = i + 1 < argc ? &argv[i + 1] : NULL;
			return o->command != NULL;
		}
		if (a[0] != '-') {
			o->command = &argv[i];
			return 1;
		}
		if (!strcmp(a, "--stats"))
			o->stats = 1;
		else if (!strcmp(a, "--pid-ns") && geteuid() == 0)
			o->pid_ns = 1; /* without root it needs a user namespace: the Node CLI makes it */
		else if ((v = option_value(argv, argc, &i, "--profile", &bad)))
			o->profile = v;
		else if ((v = option_value(argv, argc, &i, "--policy", &bad)))
			o->policy = v;
		else if ((v = option_value(argv, argc, &i, "--rootfs", &bad)))
			o->rootfs = v;
		else if ((v = option_value(argv, argc, &i, "--net", &bad)) && (!strcmp(v, "none") || !strcmp(v, "host")))
			o->net = v;
		else if ((v = option_value(argv, argc, &i, "--hostname", &bad)))
			o->hostname = v;
		else if ((v = option_value(argv, argc, &i, "--emulate", &bad)))
			o->emulate = v;
		else if ((v = option_value(argv, argc, &i, "--kernel-files", &bad)) && one_of(v, "auto", "mount", "shim"))
			o->kernel_files = v;
		else if ((v = option_value(argv, argc, &i, "--receiver", &bad)) && one_of(v, "auto", "thread", "loop"))
			o->receiver = v;
		else if ((v = option_value(argv, argc, &i, "--spin", &bad)) && one_of(v, "auto", "off", "off"))
			o->spin = v;
		else
			return 0; /* other flags, bad values, --help: the Node CLI */
		if (bad)
			return 0;
	}
	return 0; /* no command: the Node CLI says so */
}

/* ---- the resident's socket ---------------------------------------------- */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ULL;
	return h;
}

/* The package root: three levels above this executable (build/Release/vjail-run). */
static int package_root(char *out, size_t size)
{
	ssize_t n = readlink("/proc/self/exe", out, size - 1);
	if (n <= 0)
		return -1;
	out[n] = '\0';
	for (int up = 0; up < 3; up++) {
		char *s = strrchr(out, '/');
		if (!s || s == out)
			return -1;
		*s = '\0';
	}
	return 0;
}

/*
 * The socket of this user's resident for this build of vjail and these
 * settings, in .resident/ of $XDG_RUNTIME_DIR/vjail, else of /run/vjail for
 * root; that directory must be ours and private. The name hashes the resident's code (path, inode,
 * mtime of its JavaScript and of the addon) and the environment it reads (VJAIL_*, HOME, XDG_CACHE_HOME), so a
 * rebuilt or differently configured vjail gets a resident of its own.
 */
static int socket_path(const char *root, const char *resident, char *out, size_t size)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	char base[PATH_MAX], dir[PATH_MAX + 16];
	if (xdg && xdg[0] == '/')
		snprintf(base, sizeof base, "%s/vjail", xdg);
	else if (geteuid() == 0)
		snprintf(base, sizeof base, "/run/vjail");
	else
		return -1;
	/* Beside the named jails' state (same directory), in a subdirectory no jail name can take. */
	snprintf(dir, sizeof dir, "%s/.resident", base);
	if ((mkdir(base, 0700) && errno != EEXIST) || (mkdir(dir, 0700) && errno != EEXIST))
		return -1;
	struct stat st;
	if (lstat(dir, &st) || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077))
		return -1;
	/* Its JavaScript and the native addon it loads: a rebuild of either is another build. */
	char addon[PATH_MAX + 32];
	snprintf(addon, sizeof addon, "%s/build/Release/vjail.node", root);
	const char *code_files[] = { resident, addon };
	uint64_t h = 14695981039346656037ULL;
	h = fnv(h, root, strlen(root) + 1);
	for (size_t i = 0; i < sizeof code_files / sizeof code_files[0]; i++) {
		struct stat code;
		if (stat(code_files[i], &code))
			return -1;
		h = fnv(h, &code.st_ino, sizeof code.st_ino);
		h = fnv(h, &code.st_mtim, sizeof code.st_mtim);
		h = fnv(h, &code.st_size, sizeof code.st_size);
	}
	for (char **e = environ; *e; e++)
		if (!strncmp(*e, "VJAIL_", 6) || !strncmp(*e, "HOME=", 5) || !strncmp(*e, "XDG_CACHE_HOME=", 15))
			h = fnv(h, *e, strlen(*e) + 1);
	int n = snprintf(out, size, "%s/resident-%016llx.sock", dir, (unsigned long long)h);
	return n > 0 && (size_t)n < sizeof(((struct sockaddr_un *)0)->sun_path) ? 0 : -1;
}

static int try_connect(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
	if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
		close(fd);
		return -1;
	}
	struct ucred cred;
	socklen_t len = sizeof cred;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) || cred.uid != geteuid()) {
		close(fd);
		return -1;
	}
	return fd;
}

static long long now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_us(long us)
{
	struct timespec t = { .tv_sec = 0, .tv_nsec = us * 1000 };
	nanosleep(&t, NULL);
}

/*
 * Start the resident, detached: its own process group (no signal of the
 * terminal's reaches it), stdio on /dev/null, not our child. It stays in
 * our session: with autogroups (kernel.sched_autogroup_enabled) a session is
 * a scheduling group, and a resident in one of its own would hand each
 * notification to another group than the jails of this session (waiting
 * for that group's turn on a busy host), and its spinners (SCHED_IDLE only
 * within a group) could not keep CPUs awake for them (keepawake.h).
 */
static void start_resident(const char *resident, const char *path)
{
	pid_t p = fork();
	if (p < 0)
		return;
	if (p == 0) {
		setpgid(0, 0);
		if (fork() != 0)
			_exit(0);
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			dup2(null, 2);
		}
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execlp("node", "node", resident, path, (char *)NULL);
		_exit(127);
	}
	while (waitpid(p, NULL, 0) < 0 && errno == EINTR)
		;
}

/* A connection to the resident, started if none answers; waits at most 10 s for it to listen. */
static int connect_resident(void)
{
	char root[PATH_MAX], resident[PATH_MAX + 64], path[PATH_MAX + 64];
	if (package_root(root, sizeof root))
		return -1;
	snprintf(resident, sizeof resident, "%s/dist/src/resident/main.js", root);
	if (socket_path(root, resident, path, sizeof path))
		return -1;
	int fd = try_connect(path);
	if (fd >= 0)
		return fd;
	start_resident(resident, path);
	for (long long deadline = now_ms() + 10000; now_ms() < deadline; sleep_us(1000))
		if ((fd = try_connect(path)) >= 0)
			return fd;
	return -1;
}

/* One message from fd within timeout_ms; its length, or -1. With fd_out: a descriptor it carried. */
static ssize_t recv_msg(int fd, void *buf, size_t size, int timeout_ms, int *fd_out)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r;
	do
		r = poll(&p, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r <= 0)
		return -1;
	int passed;
	ssize_t n = vj_recv_with_fd(fd, buf, size, &passed);
	if (fd_out)
		*fd_out = passed;
	else if (passed >= 0)
		close(passed); /* not expected here */
	return n;
}

static int send_fd(int sock, char type, int fd)
{
	struct iovec iov = { .iov_base = &type, .iov_len = 1 };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof u);
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof fd);
	return sendmsg(sock, &mh, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

/* ---- request and plan --------------------------------------------------- */

static char msg[RESIDENT_MAX_MSG];

static size_t put(size_t at, const char *key, const char *value)
{
	if (!value)
		return at;
	int n = snprintf(msg + at, sizeof msg - at, "%s=%s", key, value);
	if (n < 0 || (size_t)n + 1 >= sizeof msg - at)
		fall_back("the request is too long");
	return at + (size_t)n + 1;
}

struct plan {
	char *filter;
	uint32_t filter_len;
	char *records; /* NUL-terminated "W..." (warning), "B..." (bind), "C..." (cgroup) and "L..." (layout) strings */
	size_t records_len;
};

/*
 * Our Uid and Cap* lines of /proc/self/status, which the jail inherits: the
 * resident evaluates a policy's capability conditions with what the jail
 * will hold (src/policy/capabilities.ts). NULL if unreadable.
 */
static const char *capability_state(char *out, size_t size)
{
	FILE *f = fopen("/proc/self/status", "re");
	if (!f)
		return NULL;
	char line[256];
	size_t at = 0;
	out[0] = '\0';
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, "Uid:", 4) || !strncmp(line, "CapInh:", 7) || !strncmp(line, "CapPrm:", 7) || !strncmp(line, "CapBnd:", 7) || !strncmp(line, "CapAmb:", 7)) {
			int n = snprintf(out + at, size - at, "%s", line);
			if (n < 0 || (size_t)n >= size - at)
				break;
			at += (size_t)n;
		}
	fclose(f);
	return at ? out : NULL;
}

static void request_plan(int sock, const struct options *o, struct plan *out)
{
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof cwd))
		fall_back("the working directory has no path");
	size_t at = 0;
	msg[at++] = RESIDENT_REQUEST;
	at = put(at, "cwd", cwd);
	at = put(at, "profile", o->profile);
	at = put(at, "policy", o->policy);
	char caps[1024];
	at = put(at, "capabilityState", o->policy ? capability_state(caps, sizeof caps) : NULL);
	at = put(at, "emulate", o->emulate);
	at = put(at, "kernelFiles", o->kernel_files);
	at = put(at, "receiver", o->receiver);
	at = put(at, "spin", o->spin);
	at = put(at, "pidNs", o->pid_ns ? "1" : NULL);
	at = put(at, "stats", o->stats ? "1" : NULL);
	at = put(at, "rootfs", o->rootfs);
	at = put(at, "net", o->net);
	at = put(at, "hostname", o->hostname);
	if (send(sock, msg, at, MSG_NOSIGNAL) != (ssize_t)at)
		fall_back("the request could not be sent");
	ssize_t n = recv_msg(sock, msg, sizeof msg - 1, 30000, NULL);
	if (n < 0)
		fall_back("it did not plan the jail within 30 s");
	if (n > 0 && msg[0] == RESIDENT_FALLBACK)
		fall_back(n > 1 ? (msg[n] = '\0', msg + 1) : "it declined");
	if (n < 5 || msg[0] != RESIDENT_PLANNED)
		fall_back("its answer was not a plan");
	memcpy(&out->filter_len, msg + 1, 4);
	if ((size_t)n < 5 + (size_t)out->filter_len)
		fall_back("its plan was cut short");
	out->filter = msg + 5;
	out->records = msg + 5 + out->filter_len;
	out->records_len = (size_t)n - 5 - out->filter_len;
}

/* ---- launch ------------------------------------------------------------- */

struct launched {
	pid_t init;
	int ctl, pidfd, listener;
};

/* vjail-init, as Node's spawn starts it: default signal dispositions and an empty mask. */
static pid_t spawn_init(const char *path, char **args, int child_ctl)
{
	pid_t p = fork();
	if (p != 0)
		return p;
	for (int s = 1; s < _NSIG; s++)
		signal(s, SIG_DFL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (dup2(child_ctl, VJAIL_CTL_FD) < 0)
		_exit(127);
	execv(path, args);
	_exit(127);
}

/* Kill a launch that failed before the workload ran, and let the Node CLI try (it says what failed). */
static _Noreturn void abandon(struct launched *l, const char *why)
{
	kill(l->init, SIGUSR2);
	while (waitpid(l->init, NULL, 0) < 0 && errno == EINTR)
		;
	fall_back(why);
}

static void launch(const struct options *o, const struct plan *plan, struct launched *l)
{
	char root[PATH_MAX], init[PATH_MAX + 64], parent[32];
	if (package_root(root, sizeof root))
		fall_back("vjail's package directory was not found");
	snprintf(init, sizeof init, "%s/build/Release/vjail-init", root);
	snprintf(parent, sizeof parent, "%d", (int)getpid());
	size_t ncmd = 0;
	while (o->command[ncmd])
		ncmd++;
	size_t nrecords = 0;
	for (size_t i = 0; i < plan->records_len; i += strlen(plan->records + i) + 1)
		nrecords += plan->records[i] == 'B' || plan->records[i] == 'C' || plan->records[i] == 'L';
	char **args = calloc(ncmd + 2 * nrecords + 8, sizeof *args);
	if (!args)
		fall_back("out of memory");
	size_t k = 0;
	args[k++] = init;
	args[k++] = "--parent";
	args[k++] = parent;
	if (o->pid_ns)
		args[k++] = "--pid-ns";
	for (size_t i = 0; i < plan->records_len; i += strlen(plan->records + i) + 1)
		if (plan->records[i] == 'B' || plan->records[i] == 'C' || plan->records[i] == 'L') {
			/* B: a kernel file to bind; C: the jail's cgroup, joined before the command runs; L: the jail's setup plan */
			args[k++] = plan->records[i] == 'B' ? "--bind" : plan->records[i] == 'C' ? "--cgroup" : "--layout";
			args[k++] = plan->records + i + 1;
		}
	args[k++] = "--";
	for (size_t i = 0; i < ncmd; i++)
		args[k++] = o->command[i];
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		fall_back("no socket pair for vjail-init");
	l->ctl = sv[0];
	l->init = spawn_init(init, args, sv[1]);
	close(sv[1]);
	free(args);
	if (l->init < 0)
		fall_back("vjail-init could not be started");
	if (send(l->ctl, plan->filter, plan->filter_len, MSG_NOSIGNAL) != (ssize_t)plan->filter_len)
		abandon(l, "vjail-init did not take the filter");
	struct ctl_msg hello;
	if (recv_msg(l->ctl, &hello, sizeof hello, 10000, &l->pidfd) != sizeof hello || hello.type != CTL_HELLO || l->pidfd < 0)
		abandon(l, "vjail-init did not say hello within 10 s");
	/* The workload installs its filter and then waits in the handshake for the supervisor. */
	for (long long deadline = now_ms() + 10000;; sleep_us(100)) {
		int fd = (int)syscall(SYS_pidfd_getfd, l->pidfd, hello.a, 0);
		if (fd >= 0) {
			char link[64], proc[64];
			snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
			ssize_t n = readlink(proc, link, sizeof link - 1);
			if (n > 0 && (link[n] = '\0', !strcmp(link, "anon_inode:seccomp notify"))) {
				fcntl(fd, F_SETFD, FD_CLOEXEC);
				l->listener = fd;
				return;
			}
			close(fd);
		} else if (errno != EBADF || now_ms() > deadline) {
			abandon(l, "the workload's seccomp listener was not there within 10 s");
		}
	}
}

/* ---- the run ------------------------------------------------------------ */

static int status_of(int raw)
{
	return WIFSIGNALED(raw) ? 128 + WTERMSIG(raw) : WEXITSTATUS(raw);
}

static const int FORWARDED[] = { SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGINT, SIGQUIT };
#define NFORWARDED ((int)(sizeof FORWARDED / sizeof FORWARDED[0]))

int main(int argc, char **argv)
{
	g_argc = argc;
	g_argv = argv;
	struct options o;
	memset(&o, 0, sizeof o);
	const char *off = getenv("VJAIL_RESIDENT");
	if (argc < 2 || (off && !strcmp(off, "0")) || !parse(argc - 2, argv + 2, &o))
		fall_back(NULL);
	g_stats = o.stats;
	/* As the Node CLI: the soft descriptor limit raised to the hard one, SIGPIPE
	 * ignored; forwarded signals held until the jail can receive them. */
	struct rlimit nofile;
	if (!getrlimit(RLIMIT_NOFILE, &nofile) && nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
	signal(SIGPIPE, SIG_IGN);
	/* As the Node CLI's supervisor: a workload of the same user may not trace this
	 * process or write its memory through /proc (docs/SECURITY.md). */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0))
		fall_back("prctl(PR_SET_DUMPABLE) failed");
	int on_terminal = isatty(0);
	sigset_t held;
	sigemptyset(&held);
	for (int i = 0; i < NFORWARDED; i++)
		if (!(on_terminal && (FORWARDED[i] == SIGINT || FORWARDED[i] == SIGQUIT)))
			sigaddset(&held, FORWARDED[i]);
	sigaddset(&held, SIGCHLD);
	sigprocmask(SIG_BLOCK, &held, NULL);

	int sock = connect_resident();
	if (sock < 0)
		fall_back("none answered within 10 s");
	struct plan plan;
	request_plan(sock, &o, &plan);
	for (size_t i = 0; i < plan.records_len; i += strlen(plan.records + i) + 1)
		if (plan.records[i] == 'W')
			fprintf(stderr, "vjail: warning: %s\n", plan.records + i + 1);
	struct launched l;
	launch(&o, &plan, &l);
	if (send_fd(sock, RESIDENT_LISTENER, l.listener))
		abandon(&l, "the listener could not be sent");
	close(l.listener);
	ssize_t answer = recv_msg(sock, msg, sizeof msg - 1, 30000, NULL);
	if (answer < 1)
		abandon(&l, "it did not start supervising within 30 s");
	if (msg[0] != RESIDENT_SUPERVISING)
		abandon(&l, msg[0] == RESIDENT_FALLBACK && answer > 1 ? (msg[answer] = '\0', msg + 1) : "it declined to supervise");
	if (on_terminal) {
		/* Keep vjail alive on a terminal ^C: the workload decides what it means. */
		signal(SIGINT, SIG_IGN);
		signal(SIGQUIT, SIG_IGN);
	}
	int sfd = signalfd(-1, &held, SFD_CLOEXEC);
	int raw = -1, exec_errno = 0;
	for (;;) {
		int st;
		pid_t w = waitpid(l.init, &st, WNOHANG);
		if (w == l.init) {
			raw = st;
			break;
		}
		struct pollfd p[2] = { { .fd = sfd, .events = POLLIN }, { .fd = sock, .events = POLLIN } };
		if (poll(p, sock >= 0 ? 2 : 1, -1) < 0)
			continue;
		if (p[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof si) == sizeof si && si.ssi_signo != SIGCHLD)
				syscall(SYS_pidfd_send_signal, l.pidfd, (int)si.ssi_signo, NULL, 0);
		}
		if (sock >= 0 && p[1].revents) {
			ssize_t n = recv_msg(sock, msg, sizeof msg - 1, 0, NULL);
			if (n > 0 && msg[0] == RESIDENT_WARNING) {
				msg[n] = '\0';
				fprintf(stderr, "vjail: %s\n", msg + 1);
			} else if (n <= 0) {
				/* The supervisor is gone: end the jail, as when the Node CLI's supervisor dies. */
				kill(l.init, SIGUSR2);
				close(sock);
				sock = -1;
			}
		}
	}
	/* vjail-init exits last: everything the jail said is in the socket. */
	int status = -1;
	struct ctl_msg m;
	while (recv_msg(l.ctl, &m, sizeof m, 0, NULL) == sizeof m) {
		if (m.type == CTL_EXEC_FAILED)
			exec_errno = m.a;
		if (m.type == CTL_EXIT)
			status = status_of(m.a);
	}
	if (status < 0)
		status = status_of(raw);
	/* As the Node CLI, return only once nothing of the jail runs on: the resident kills
	 * what is left in the jail's cgroup (a process that killed vjail-init), then says 'K'.
	 * Its warnings come first. Bounded: the kill itself gives up after 5 s. */
	char ended = RESIDENT_ENDED;
	if (sock >= 0 && send(sock, &ended, 1, MSG_NOSIGNAL) == 1)
		for (;;) {
			ssize_t n = recv_msg(sock, msg, sizeof msg - 1, 10000, NULL);
			if (n <= 0) {
				if (n < 0)
					fprintf(stderr, "vjail: warning: the resident supervisor did not confirm within 10 s that nothing of the jail runs on\n");
				break;
			}
			if (msg[0] == RESIDENT_KILLED)
				break;
			msg[n] = '\0';
			if (msg[0] == RESIDENT_WARNING)
				fprintf(stderr, "vjail: %s\n", msg + 1);
			else if (msg[0] == RESIDENT_STATS)
				fprintf(stderr, "%s\n", msg + 1);
		}
	if (sock >= 0)
		close(sock);
	if (exec_errno) {
		const char *why = exec_errno == ENOENT ? "command not found" : strerrorname_np(exec_errno);
		fprintf(stderr, "vjail: cannot run \"%s\": %s\n", o.command[0], why ? why : "unknown error");
	}
	return status;
}
