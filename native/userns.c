/*
 * User namespaces without root (userns.h). The maps are written by a child
 * forked before unshare(CLONE_NEWUSER), so it stays in the parent namespace,
 * where newuidmap and newgidmap (set-user-ID root, checking /etc/subuid and
 * /etc/subgid) are allowed to map the subordinate IDs.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "userns.h"

#define MAX_LINES 340

/* "I:O:C,I:O:C" into its numbers; returns how many lines, or -1. */
static int parse_map(const char *spec, unsigned long v[][3])
{
	int n = 0;
	const char *s = spec;
	while (*s && n < MAX_LINES) {
		char *end;
		for (int k = 0; k < 3; k++) {
			if (*s < '0' || *s > '9')
				return -1;
			errno = 0;
			v[n][k] = strtoul(s, &end, 10);
			if (errno || (k < 2 && *end != ':'))
				return -1;
			s = k < 2 ? end + 1 : end;
		}
		n++;
		if (*s == ',')
			s++;
		else if (*s)
			return -1;
	}
	return *s || n == 0 ? -1 : n;
}

static int write_file(pid_t pid, const char *name, const char *text)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	size_t len = strlen(text);
	int err = write(fd, text, len) == (ssize_t)len ? 0 : (errno ? errno : EIO);
	close(fd);
	return err;
}

/* The kernel's format: "INSIDE OUTSIDE COUNT\n" per line. */
static int write_map(pid_t pid, const char *name, const char *spec)
{
	static unsigned long v[MAX_LINES][3];
	static char text[MAX_LINES * 64];
	int n = parse_map(spec, v);
	if (n < 0)
		return EINVAL;
	size_t at = 0;
	for (int i = 0; i < n; i++)
		at += (size_t)snprintf(text + at, sizeof text - at, "%lu %lu %lu\n", v[i][0], v[i][1], v[i][2]);
	return write_file(pid, name, text);
}

/* newuidmap PID INSIDE OUTSIDE COUNT...; 0, -1 when it refused, or an errno value. */
static int run_newidmap(const char *prog, pid_t pid, const char *spec)
{
	static unsigned long v[MAX_LINES][3];
	static char numbers[MAX_LINES * 3 + 1][24];
	static char *argv[MAX_LINES * 3 + 3];
	int n = parse_map(spec, v);
	if (n < 0)
		return EINVAL;
	int a = 0;
	argv[a++] = (char *)prog;
	snprintf(numbers[0], sizeof numbers[0], "%d", (int)pid);
	argv[a++] = numbers[0];
	for (int i = 0; i < n; i++)
		for (int k = 0; k < 3; k++) {
			snprintf(numbers[a - 1], sizeof numbers[0], "%lu", v[i][k]);
			argv[a] = numbers[a - 1];
			a++;
		}
	argv[a] = NULL;
	pid_t p = fork();
	if (p < 0)
		return errno;
	if (p == 0) {
		execvp(prog, argv);
		_exit(127);
	}
	int st;
	while (waitpid(p, &st, 0) < 0)
		if (errno != EINTR)
			return errno;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
		return ENOENT;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int write_maps(pid_t pid, const struct user_ns_maps *m)
{
	if (m->writer == IDMAP_NEWIDMAP) {
		int err = run_newidmap("newuidmap", pid, m->uid_map);
		return err ? err : run_newidmap("newgidmap", pid, m->gid_map);
	}
	int err = write_map(pid, "uid_map", m->uid_map);
	/* Without CAP_SETGID outside, a gid map is accepted only once setgroups is denied. */
	if (!err && geteuid() != 0)
		err = write_file(pid, "setgroups", "deny");
	return err ? err : write_map(pid, "gid_map", m->gid_map);
}

int enter_user_ns(const struct user_ns_maps *m)
{
	int go[2];
	if (pipe2(go, O_CLOEXEC))
		return errno;
	pid_t self = getpid();
	pid_t helper = fork();
	if (helper < 0) {
		int err = errno;
		close(go[0]);
		close(go[1]);
		return err;
	}
	if (helper == 0) {
		char c;
		ssize_t n;
		close(go[1]);
		do
			n = read(go[0], &c, 1);
		while (n < 0 && errno == EINTR);
		if (n != 1)
			_exit(0); /* the unshare failed: nothing to map */
		int err = write_maps(self, m);
		_exit(err < 0 ? 255 : err);
	}
	close(go[0]);
	int err = unshare(CLONE_NEWUSER) ? errno : 0;
	if (!err && write(go[1], "m", 1) != 1)
		err = errno;
	close(go[1]);
	int st;
	while (waitpid(helper, &st, 0) < 0)
		if (errno != EINTR)
			return err ? err : errno;
	if (err)
		return err;
	if (!WIFEXITED(st))
		return ECHILD;
	return WEXITSTATUS(st) == 255 ? -1 : WEXITSTATUS(st);
}

static int last_cap(void)
{
	char buf[16] = { 0 };
	int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return CAP_LAST_CAP;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	return n > 0 ? atoi(buf) : CAP_LAST_CAP;
}

int raise_ambient_caps(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d))
		return errno;
	d[0].inheritable = d[0].permitted;
	d[1].inheritable = d[1].permitted;
	if (syscall(SYS_capset, &h, d))
		return errno;
	for (int cap = 0, last = last_cap(); cap <= last; cap++) {
		unsigned held = cap < 32 ? (d[0].permitted >> cap) & 1 : (d[1].permitted >> (cap - 32)) & 1;
		if (held && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0))
			return errno;
	}
	return 0;
}
