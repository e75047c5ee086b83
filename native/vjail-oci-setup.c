/*
 * vjail-oci-setup: builds an OCI container around vjail-init. vjail-oci's
 * monitor starts it in place of vjail-init:
 *
 *   vjail-oci-setup PLAN VJAIL-INIT [vjail-init's arguments...]
 *
 * PLAN is a file of directives written by src/oci/plan-file.ts from the
 * bundle's config.json (one per line, tab-separated fields, each field
 * %XX-escaped). The setup runs before any seccomp filter: the container's
 * filter (Docker's default, say) forbids mount and pivot_root, so the
 * namespaces and mounts are made first and vjail-init, which installs the
 * filter, is exec'd last, from a descriptor opened before pivot_root.
 *
 *  parent (outside):  join the cgroups, unshare the PID and time namespaces, fork
 *  child (PID 1):     namespaces, mounts, devices, pivot_root, console,
 *                     "ok" on fd 4 (the create command waits for it), wait on
 *                     the start fifo, user and capabilities, exec vjail-init
 *
 * vjail-init then stays the container's PID 1 (the reaper) and its child,
 * PID 2, installs the filter and execs the container's process. Errors
 * before "ok" are written to fd 4 as "error: ..." for `create` to print;
 * later ones go to stderr, which is the container's.
 *
 * On restore the plan adds "program PATH" (vjail's restorer, a host file,
 * opened before pivot_root and exec'd through /proc/self/fd in place of the
 * command vjail-init is given) and "passfd" (fd 4 is the restorer's
 * descriptor handover, passed on to it: nothing is reported on it, errors
 * go to stderr and the launch wait); there is no start fifo.
 */

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "protocol.h"
#include "setup_plan.h"
#include "userns.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#endif

#define MAX_LINES PLAN_MAX_LINES

static struct setup_plan plan;
static int started; /* past the start fifo: errors go to stderr only */
static int pass_to_program; /* plan "passfd": fd 4 is the program's (restore's handover), not create's report channel */

static _Noreturn void die(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (!started) {
		if (!pass_to_program)
			dprintf(VJAIL_PASS_FD, "error: %s\n", msg);
		/* Tell the monitor's launch wait, so it does not wait for a hello. */
		struct ctl_msg m = { .type = CTL_SETUP_FAILED, .a = errno, .b = STEP_UNSHARE };
		send(VJAIL_CTL_FD, &m, sizeof m, MSG_NOSIGNAL);
	} else {
		/* The monitor learns the container's status from vjail-init; it never ran. */
		struct ctl_msg m = { .type = CTL_EXIT, .a = 127 << 8 };
		send(VJAIL_CTL_FD, &m, sizeof m, MSG_NOSIGNAL);
	}
	dprintf(2, "vjail-oci: %s\n", msg);
	_exit(127);
}

static void read_plan(const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f)
		die("cannot read the setup plan %s: %s", path, strerror(errno));
	static char text[1 << 20];
	size_t n = fread(text, 1, sizeof text - 1, f);
	fclose(f);
	if (n == sizeof text - 1)
		die("the setup plan %s is larger than %zu bytes", path, sizeof text - 1);
	text[n] = 0;
	plan_parse(&plan, text);
}

#define get(key) plan_get(&plan, key)
#define EACH(key, l) PLAN_EACH(&plan, key, l)
#define field plan_field
#define ns_flag plan_ns_flag

static void join_ns(const char *type, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, ns_flag(type)))
		die("cannot join the %s namespace %s: %s", type, path, strerror(errno));
	close(fd);
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		die("cannot write %s: %s", path, strerror(errno));
	close(fd);
}

static const char *rootfs;

/* The terminal: a pty from the container's devpts, its master sent over the console socket. */
static int connect_console(const struct plan_line *l)
{
	int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", field(l, 1));
	if (sock < 0 || connect(sock, (struct sockaddr *)&sa, sizeof sa))
		die("cannot connect to the console socket %s: %s", field(l, 1), strerror(errno));
	return sock;
}

/* The socket is connected before pivot_root (its path is the host's). */
static void make_console(const struct plan_line *l, int sock)
{
	int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0 || unlockpt(master))
		die("cannot open a pty in the container's /dev/ptmx: %s", strerror(errno));
	char name[128];
	if (ptsname_r(master, name, sizeof name))
		die("ptsname: %s", strerror(errno));
	int slave = open(name, O_RDWR | O_NOCTTY);
	if (slave < 0)
		die("cannot open %s: %s", name, strerror(errno));
	struct winsize ws = { .ws_row = (unsigned short)atoi(field(l, 2)), .ws_col = (unsigned short)atoi(field(l, 3)) };
	if (ws.ws_row && ws.ws_col)
		ioctl(slave, TIOCSWINSZ, &ws);
	char byte = 0;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &master, sizeof master);
	if (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0)
		die("cannot send the pty to the console socket: %s", strerror(errno));
	close(master);
	close(sock);
	setsid();
	if (ioctl(slave, TIOCSCTTY, 0))
		die("cannot make %s the controlling terminal: %s", name, strerror(errno));
	for (int fd = 0; fd <= 2; fd++)
		dup2(slave, fd);
	if (slave > 2)
		close(slave);
}

static int rlimit_of(const char *name)
{
	static const char *names[] = { "CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK", "AS", "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME" };
	for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
		if (!strcmp(name + 7, names[i]))
			return i;
	return -1;
}

/* The executable must exist now, as runc checks at create (engines turn this message into exit status 127). */
static void check_executable(const char *exe, const char *path_env)
{
	if (strchr(exe, '/')) {
		if (access(exe, X_OK))
			die("exec: \"%s\": %s", exe, strerror(errno));
		return;
	}
	char dirs[4096], cand[4096];
	snprintf(dirs, sizeof dirs, "%s", path_env ? path_env : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	char *save = NULL;
	for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		snprintf(cand, sizeof cand, "%s/%s", d, exe);
		if (!access(cand, X_OK))
			return;
	}
	die("exec: \"%s\": executable file not found in $PATH", exe);
}

static void set_identity(void)
{
	const char *caps = NULL;
	const struct plan_line *cl = NULL;
	EACH("caps", l) cl = l;
	const struct plan_line *ul = NULL;
	EACH("user", l) ul = l;
	prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0);
	if (cl) {
		unsigned long long bnd = strtoull(field(cl, 1), NULL, 16);
		for (int c = 0; c < 64; c++)
			if (!(bnd & (1ull << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) && errno != EINVAL)
				die("cannot drop capability %d from the bounding set: %s", c, strerror(errno));
	}
	if (ul) {
		gid_t groups[256];
		int ng = 0;
		char gl[4096];
		snprintf(gl, sizeof gl, "%s", field(ul, 3));
		char *save = NULL;
		for (char *g = strtok_r(gl, ",", &save); g && ng < 256; g = strtok_r(NULL, ",", &save))
			groups[ng++] = (gid_t)strtoul(g, NULL, 10);
		uid_t uid = (uid_t)strtoul(field(ul, 1), NULL, 10);
		gid_t gid = (gid_t)strtoul(field(ul, 2), NULL, 10);
		if (setgroups((size_t)ng, groups) || setresgid(gid, gid, gid) || setresuid(uid, uid, uid))
			die("cannot become user %u:%u: %s", uid, gid, strerror(errno));
	}
	if (cl) {
		caps = field(cl, 2);
		unsigned long long eff = strtoull(caps, NULL, 16), prm = strtoull(field(cl, 3), NULL, 16),
				   inh = strtoull(field(cl, 4), NULL, 16), amb = strtoull(field(cl, 5), NULL, 16);
		struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
		struct __user_cap_data_struct d[2] = {
			{ (unsigned)eff, (unsigned)prm, (unsigned)inh },
			{ (unsigned)(eff >> 32), (unsigned)(prm >> 32), (unsigned)(inh >> 32) },
		};
		if (syscall(SYS_capset, &h, d))
			die("cannot set the process's capabilities: %s", strerror(errno));
		/* As runc: an ambient capability needs to be permitted and inheritable; others are skipped. */
		amb &= prm & inh;
		for (int c = 0; c < 64; c++)
			if ((amb & (1ull << c)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0))
				die("cannot raise ambient capability %d: %s", c, strerror(errno));
	}
	prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
}

static void setup_container(void)
{
	int unshare_flags = 0;
	EACH("ns", l)
	{
		if (ns_flag(l->f[1]) == CLONE_NEWUSER)
			continue; /* entered first, by the intermediate (enter_user_namespace) */
		if (l->n > 2 && *l->f[2])
			join_ns(l->f[1], l->f[2]);
		else
			unshare_flags |= ns_flag(l->f[1]);
	}
	if (unshare(unshare_flags & ~(CLONE_NEWPID | CLONE_NEWTIME) & ~CLONE_NEWCGROUP))
		die("cannot create the container's namespaces: %s", strerror(errno));
	rootfs = get("rootfs");
	if (!rootfs)
		die("the setup plan names no root file system");
	unsigned long prop = strtoul(get("rootpropagation") ? get("rootpropagation") : "0", NULL, 0);
	if (mount(NULL, "/", NULL, prop ? prop : MS_REC | MS_PRIVATE, NULL))
		die("cannot make / private: %s", strerror(errno));
	if (mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL))
		die("cannot bind the root file system %s: %s", rootfs, strerror(errno));
	/* The cgroup namespace after joining the cgroups: the container's cgroup is its root. */
	if ((unshare_flags & CLONE_NEWCGROUP) && unshare(CLONE_NEWCGROUP))
		die("cannot create the cgroup namespace: %s", strerror(errno));
	char why[1024];
	if (plan_build_root(&plan, rootfs, why, sizeof why))
		die("%s", why);
	if (get("hostname") && sethostname(get("hostname"), strlen(get("hostname"))))
		die("cannot set the hostname: %s", strerror(errno));
	if (get("domainname") && setdomainname(get("domainname"), strlen(get("domainname"))))
		die("cannot set the domain name: %s", strerror(errno));
	EACH("sysctl", l)
	{
		char path[4096];
		snprintf(path, sizeof path, "%s/proc/sys/", rootfs);
		size_t at = strlen(path);
		snprintf(path + at, sizeof path - at, "%s", field(l, 1));
		for (char *s = path + at; *s; s++)
			if (*s == '.')
				*s = '/';
		write_file(path, field(l, 2));
	}
}

/* exec into a running container: its namespaces, the mount namespace last (it moves our root there). */
static void join_container(const char *pid)
{
	static const char *const order[] = { "ipc", "uts", "net", "cgroup", "time", "mnt" };
	for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
		char path[128], self[128], a[64] = "", b[64] = "";
		snprintf(path, sizeof path, "/proc/%s/ns/%s", pid, order[i]);
		snprintf(self, sizeof self, "/proc/self/ns/%s", order[i]);
		/* Already there (the container shares ours): setns would be refused for some kinds. */
		if (readlink(path, a, sizeof a - 1) < 0 || (readlink(self, b, sizeof b - 1) >= 0 && !strcmp(a, b)))
			continue;
		join_ns(!strcmp(order[i], "mnt") ? "mount" : !strcmp(order[i], "net") ? "network" : order[i], path);
	}
}

/*
 * The user namespace comes before every other: the namespaces made after
 * it are its own, so the container's root holds its capabilities over them.
 * A new one gets the config's maps ("userns" UIDMAP GIDMAP WRITER); a
 * path is joined; exec joins the container's.
 */
static void enter_user_namespace(const char *target)
{
	if (target) {
		char path[128], self[128], a[64] = "", b[64] = "";
		snprintf(path, sizeof path, "/proc/%s/ns/user", target);
		snprintf(self, sizeof self, "/proc/self/ns/user");
		if (readlink(path, a, sizeof a - 1) >= 0 && readlink(self, b, sizeof b - 1) >= 0 && strcmp(a, b))
			join_ns("user", path);
		return;
	}
	EACH("ns", l)
	{
		if (ns_flag(l->f[1]) == CLONE_NEWUSER && l->n > 2 && *l->f[2])
			join_ns("user", l->f[2]);
	}
	EACH("userns", l)
	{
		struct user_ns_maps m = { field(l, 1), field(l, 2), !strcmp(field(l, 3), "newidmap") ? IDMAP_NEWIDMAP : IDMAP_WRITE };
		int err = enter_user_ns(&m);
		if (err)
			die("cannot create the container's user namespace: %s", err < 0 ? "newuidmap/newgidmap refused linux.uidMappings/gidMappings (they say why above)" : strerror(err));
		/* Root of it, as runc: what the setup creates (/dev's nodes, dirs in a tmpfs) must belong to an ID mapped there. */
		if (setresgid(0, 0, 0) || setresuid(0, 0, 0))
			die("cannot become root of the container's user namespace (linux.uidMappings and gidMappings must map 0): %s", strerror(errno));
		setgroups(0, NULL); /* refused where setgroups is denied: then the caller's stay */
	}
}

static void write_pid_file(const char *path, pid_t pid)
{
	char tmp[4200], text[32];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	snprintf(text, sizeof text, "%d", (int)pid);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) || close(fd) || rename(tmp, path))
		die("cannot write %s: %s", path, strerror(errno));
}

/* vjail-init's --preserve-fds N among our arguments (fds VJAIL_PRESERVED_FD.. pass through us), else 0. */
static int preserved_count(int argc, char **argv)
{
	for (int i = 3; i + 1 < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--preserve-fds"))
			return atoi(argv[i + 1]);
	return 0;
}

static volatile pid_t container_pid;

static void end_container(int sig)
{
	(void)sig;
	if (container_pid > 0)
		kill(container_pid, SIGKILL);
	_exit(137);
}

/*
 * The monitor's child, outside: it ends when the container's first process
 * ends (watched through a pidfd: that process is not our child), and takes
 * it down if the monitor dies (SIGUSR2, our parent-death signal) or asks
 * (launch's SIGUSR2). The container's exit status reaches the monitor from
 * vjail-init (CTL_EXIT).
 */
static int watch_container(pid_t mid, int pidpipe, int pid_written)
{
	struct sigaction sa = { .sa_handler = end_container };
	sigaction(SIGUSR2, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGINT, SIG_IGN);
	int st;
	while (waitpid(mid, &st, 0) < 0 && errno == EINTR)
		;
	pid_t pid;
	if (read(pidpipe, &pid, sizeof pid) != sizeof pid)
		return 127; /* the intermediate failed, and said why */
	container_pid = pid;
	/* Written here, outside: the intermediate may be in the container's user namespace, where our files are not its. */
	if (get("initpid"))
		write_pid_file(get("initpid"), pid);
	close(pid_written);
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pfd < 0)
		return 0;
	struct pollfd p = { .fd = pfd, .events = POLLIN };
	while (poll(&p, 1, -1) < 0 && errno == EINTR)
		;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: vjail-oci-setup PLAN VJAIL-INIT [ARG...]\n");
		return 2;
	}
	read_plan(argv[1]);
	pass_to_program = get("passfd") != NULL;
	pid_t monitor = getppid();
	prctl(PR_SET_PDEATHSIG, SIGUSR2, 0, 0, 0);
	if (getppid() != monitor)
		_exit(137);
	/* The start fifo and vjail-init are opened while host paths are still reachable. */
	int init_fd = open(argv[2], O_PATH | O_CLOEXEC);
	if (init_fd < 0)
		die("cannot open %s: %s", argv[2], strerror(errno));
	/* Plan "program": a host file (vjail's restorer) run in place of the config's program,
	 * opened now as vjail-init is: after pivot_root its path is out of reach. */
	int program_fd = -1;
	if (get("program")) {
		program_fd = open(get("program"), O_PATH);
		if (program_fd < 0)
			die("cannot open %s: %s", get("program"), strerror(errno));
	}
	int fifo = -1;
	if (get("fifo")) {
		/* In a user namespace of its own, the container's root is not the fifo's owner: it may write, as runc's 0622. */
		mode_t mode = get("userns") ? 0622 : 0600;
		if (mkfifo(get("fifo"), mode) && errno != EEXIST)
			die("cannot make the start fifo %s: %s", get("fifo"), strerror(errno));
		if (chmod(get("fifo"), mode))
			die("cannot set the mode of the start fifo: %s", strerror(errno));
		fifo = open(get("fifo"), O_PATH | O_CLOEXEC);
		if (fifo < 0)
			die("cannot open the start fifo: %s", strerror(errno));
	}
	EACH("cgroup", l)
	{
		char path[4096];
		snprintf(path, sizeof path, "%s/cgroup.procs", field(l, 1));
		write_file(path, "0");
	}
	/* The container's pid comes back on pidpipe; pid_written closes once the pid file holds it. */
	int pidpipe[2], pid_written[2];
	if (pipe2(pidpipe, O_CLOEXEC) || pipe2(pid_written, O_CLOEXEC))
		die("pipe: %s", strerror(errno));
	pid_t mid = fork();
	if (mid < 0)
		die("fork: %s", strerror(errno));
	if (mid > 0) {
		close(pidpipe[1]);
		close(pid_written[0]);
		close(VJAIL_PASS_FD);
		/* The container's process holds the preserved fds; we, outside, do not. */
		for (int i = 0; i < preserved_count(argc, argv); i++)
			close(VJAIL_PRESERVED_FD + i);
		return watch_container(mid, pidpipe[0], pid_written[1]);
	}
	close(pid_written[1]);
	/* The intermediate: it makes the container's first process and exits, so
	 * that process is re-parented to the engine's subreaper (conmon reaps the
	 * pid it was given, and finds the container's namespaces through it). */
	close(pidpipe[0]);
	const char *target = get("join");
	enter_user_namespace(target);
	if (target) {
		char path[128];
		snprintf(path, sizeof path, "/proc/%s/ns/pid", target);
		join_ns("pid", path);
	}
	int outer = 0;
	EACH("ns", l)
	{
		int f = ns_flag(l->f[1]);
		if (f == CLONE_NEWPID || f == CLONE_NEWTIME) {
			if (l->n > 2 && *l->f[2])
				join_ns(l->f[1], l->f[2]);
			else
				outer |= f;
		}
	}
	if (outer && unshare(outer))
		die("cannot create the container's PID or time namespace: %s", strerror(errno));
	EACH("timeoffset", l)
	{
		char text[128];
		snprintf(text, sizeof text, "%s %s %s", field(l, 1), field(l, 2), field(l, 3));
		write_file("/proc/self/timens_offsets", text);
	}
	pid_t child = fork();
	if (child < 0)
		die("fork: %s", strerror(errno));
	if (child > 0) {
		if (write(pidpipe[1], &child, sizeof child) != sizeof child)
			kill(child, SIGKILL);
		_exit(0);
	}
	close(pidpipe[1]);
	const struct plan_line *console = NULL;
	EACH("console", l) console = l;
	int console_sock = console ? connect_console(console) : -1;
	if (target) {
		join_container(target);
	} else {
		setup_container();
		char why[1024];
		if (plan_pivot(rootfs, why, sizeof why) || plan_finish_root(&plan, why, sizeof why))
			die("%s", why);
	}
	if (console)
		make_console(console, console_sock);
	else
		setsid();
	EACH("rlimit", l)
	{
		int res = rlimit_of(field(l, 1));
		struct rlimit rl = { strtoull(field(l, 2), NULL, 10), strtoull(field(l, 3), NULL, 10) };
		if (res < 0 || setrlimit(res, &rl))
			die("cannot set %s: %s", field(l, 1), res < 0 ? "unknown limit" : strerror(errno));
	}
	if (get("oom"))
		write_file("/proc/self/oom_score_adj", get("oom"));
	if (get("umask"))
		umask((mode_t)strtoul(get("umask"), NULL, 10));
	if (get("cwd") && chdir(get("cwd")))
		die("cannot enter the working directory %s: %s", get("cwd"), strerror(errno));
	/* The process's environment replaces ours: vjail-init's exec looks PATH up in it. */
	static char *env[MAX_LINES];
	int ne = 0;
	const char *path_env = NULL;
	EACH("env", l)
	{
		env[ne++] = l->f[1];
		if (!strncmp(l->f[1], "PATH=", 5))
			path_env = l->f[1] + 5;
	}
	env[ne] = NULL;
	if (get("exe"))
		check_executable(get("exe"), path_env);

	/* `create` reads the pid file once we say ok (on restore, once the monitor says so, later still). */
	char eof;
	while (read(pid_written[0], &eof, 1) < 0 && errno == EINTR)
		;
	close(pid_written[0]);
	if (!pass_to_program) {
		dprintf(VJAIL_PASS_FD, "ok\n");
		close(VJAIL_PASS_FD);
	}
	started = 1;
	if (fifo >= 0) {
		char via[64];
		snprintf(via, sizeof via, "/proc/self/fd/%d", fifo);
		int w;
		while ((w = open(via, O_WRONLY | O_CLOEXEC)) < 0 && errno == EINTR)
			;
		if (w < 0 || write(w, "0", 1) != 1)
			die("waiting for start: %s", strerror(errno));
		close(w);
		close(fifo);
	}
	set_identity();
	/* vjail-init's arguments: its --parent check cannot hold here (we are PID 1 of our namespace). */
	static char *args[MAX_LINES];
	static char program[64];
	snprintf(program, sizeof program, "/proc/self/fd/%d", program_fd);
	int na = 0, opts = 1, command = -1;
	for (int i = 2; i < argc && na < MAX_LINES - 1; i++) {
		if (opts && !strcmp(argv[i], "--")) {
			opts = 0;
			command = i + 1;
		}
		if (opts && !strcmp(argv[i], "--pass-fd") && !pass_to_program)
			continue; /* fd 4 was ours, and is closed */
		if (i == command && program_fd >= 0) {
			args[na++] = program; /* vjail-init marks it close-on-exec; an ELF file still runs */
			continue;
		}
		args[na++] = opts && i > 2 && !strcmp(argv[i - 1], "--parent") ? "0" : argv[i];
	}
	args[na] = NULL;
	syscall(SYS_execveat, init_fd, "", args, env, AT_EMPTY_PATH);
	die("cannot exec vjail-init: %s", strerror(errno));
}
