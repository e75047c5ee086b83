/* A container's setup plan and the steps that build its root (setup_plan.h). */
#include "setup_plan.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

/* Say why, keep errno, return -1. */
static int failed(char *why, size_t size, const char *fmt, ...)
{
	int err = errno;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, size, fmt, ap);
	va_end(ap);
	size_t at = strlen(why);
	snprintf(why + at, size - at, ": %s", strerror(err));
	errno = err;
	return -1;
}

static int unhex(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Decode %XX in place. */
static void unescape(char *s)
{
	char *o = s;
	for (; *s; s++) {
		if (*s == '%' && unhex(s[1]) >= 0 && unhex(s[2]) >= 0) {
			*o++ = (char)(unhex(s[1]) * 16 + unhex(s[2]));
			s += 2;
		} else
			*o++ = *s;
	}
	*o = 0;
}

void plan_parse(struct setup_plan *p, char *text)
{
	p->n = 0;
	char *save_line = NULL;
	for (char *ln = strtok_r(text, "\n", &save_line); ln && p->n < PLAN_MAX_LINES; ln = strtok_r(NULL, "\n", &save_line)) {
		struct plan_line *l = &p->lines[p->n];
		l->n = 0;
		char *save = NULL;
		for (char *t = strtok_r(ln, "\t", &save); t && l->n < PLAN_MAX_FIELDS; t = strtok_r(NULL, "\t", &save)) {
			unescape(t);
			l->f[l->n++] = t;
		}
		if (l->n)
			p->n++;
	}
}

const char *plan_get(const struct setup_plan *p, const char *key)
{
	for (int i = 0; i < p->n; i++)
		if (!strcmp(p->lines[i].f[0], key))
			return p->lines[i].n > 1 ? p->lines[i].f[1] : "";
	return NULL;
}

const char *plan_field(const struct plan_line *l, int i)
{
	return i < l->n ? l->f[i] : "";
}

int plan_ns_flag(const char *type)
{
	static const struct {
		const char *name;
		int flag;
	} kinds[] = {
		{ "mount", CLONE_NEWNS }, { "uts", CLONE_NEWUTS },	   { "ipc", CLONE_NEWIPC },   { "network", CLONE_NEWNET },
		{ "cgroup", CLONE_NEWCGROUP }, { "pid", CLONE_NEWPID }, { "time", CLONE_NEWTIME }, { "user", CLONE_NEWUSER },
	};
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
		if (!strcmp(type, kinds[i].name))
			return kinds[i].flag;
	return 0;
}

/* mkdir -p, or create an empty file as the last component when `file`. */
static void make_path(const char *path, int file)
{
	char p[4096];
	snprintf(p, sizeof p, "%s", path);
	for (char *s = p + 1; *s; s++)
		if (*s == '/') {
			*s = 0;
			mkdir(p, 0755);
			*s = '/';
		}
	if (file) {
		int fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
		if (fd >= 0)
			close(fd);
	} else
		mkdir(p, 0755);
}

static void in_root(char *out, size_t size, const char *rootfs, const char *path)
{
	snprintf(out, size, "%s%s%s", rootfs, path[0] == '/' ? "" : "/", path);
}

/* mount SRC DST TYPE FLAGS PROPAGATION DATA, under the root file system (still at its host path). */
static int do_mount(const char *rootfs, const struct plan_line *l, char *why, size_t size)
{
	const char *src = plan_field(l, 1), *dst = plan_field(l, 2), *type = plan_field(l, 3), *data = plan_field(l, 6);
	unsigned long flags = strtoul(plan_field(l, 4), NULL, 0), prop = strtoul(plan_field(l, 5), NULL, 0);
	char target[4096];
	in_root(target, sizeof target, rootfs, dst);
	struct stat st;
	int bind = (flags & MS_BIND) != 0;
	make_path(target, bind && stat(src, &st) == 0 && !S_ISDIR(st.st_mode));
	if (bind) {
		if (mount(src, target, NULL, flags & (MS_BIND | MS_REC), NULL))
			return failed(why, size, "cannot bind %s to %s", src, dst);
		unsigned long rest = flags & ~(MS_BIND | MS_REC);
		if (rest && mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | rest, NULL))
			return failed(why, size, "cannot remount %s with its options", dst);
	} else if (mount(src, target, type, flags, *data ? data : NULL)) {
		/* A user namespace may mount sysfs only in a network namespace of its own: else the host's is bound in, as runc does. */
		if (errno != EPERM || strcmp(type, "sysfs"))
			return failed(why, size, "cannot mount %s (%s) on %s", src, type, dst);
		if (mount("/sys", target, NULL, MS_BIND | MS_REC, NULL) ||
		    mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | (flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)), NULL))
			return failed(why, size, "cannot bind the host's /sys on %s (sysfs cannot be mounted here)", dst);
	}
	if (prop && mount(NULL, target, NULL, prop, NULL))
		return failed(why, size, "cannot set the propagation of %s", dst);
	return 0;
}

/* device PATH c|b|p MAJOR MINOR MODE UID GID */
static int make_device(const char *rootfs, const struct plan_line *l, char *why, size_t size)
{
	char path[4096];
	in_root(path, sizeof path, rootfs, plan_field(l, 1));
	char kind = plan_field(l, 2)[0];
	mode_t type = kind == 'b' ? S_IFBLK : kind == 'p' ? S_IFIFO : S_IFCHR;
	dev_t dev = makedev(strtoul(plan_field(l, 3), NULL, 0), strtoul(plan_field(l, 4), NULL, 0));
	mode_t mode = (mode_t)strtoul(plan_field(l, 5), NULL, 0);
	make_path(path, 1);
	unlink(path);
	if (mknod(path, type | (mode & 07777), dev)) {
		/* In a user namespace devices cannot be made (runc does the same): the host's is bound in, as it is. */
		if (errno != EPERM || type == S_IFIFO)
			return failed(why, size, "cannot create the device %s", plan_field(l, 1));
		make_path(path, 1);
		if (mount(plan_field(l, 1), path, NULL, MS_BIND, NULL))
			return failed(why, size, "cannot bind the host's device %s (devices cannot be made in a user namespace)", plan_field(l, 1));
		return 0;
	}
	chmod(path, mode & 07777);
	if (chown(path, (uid_t)strtoul(plan_field(l, 6), NULL, 0), (gid_t)strtoul(plan_field(l, 7), NULL, 0)))
		return failed(why, size, "cannot chown the device %s", plan_field(l, 1));
	return 0;
}

int plan_build_root(const struct setup_plan *p, const char *rootfs, char *why, size_t size)
{
	PLAN_EACH(p, "mount", l)
	{
		if (do_mount(rootfs, l, why, size))
			return -1;
	}
	PLAN_EACH(p, "device", l)
	{
		if (make_device(rootfs, l, why, size))
			return -1;
	}
	PLAN_EACH(p, "symlink", l)
	{
		char path[4096];
		in_root(path, sizeof path, rootfs, plan_field(l, 2));
		symlink(plan_field(l, 1), path);
	}
	PLAN_EACH(p, "kfile", l)
	{
		char path[4096];
		in_root(path, sizeof path, rootfs, plan_field(l, 2));
		if (mount(plan_field(l, 1), path, NULL, MS_BIND, NULL) ||
		    mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
			return failed(why, size, "cannot present the profile's %s", plan_field(l, 2));
	}
	return 0;
}

int plan_pivot(const char *rootfs, char *why, size_t size)
{
	if (chdir(rootfs))
		return failed(why, size, "cannot enter the root file system %s", rootfs);
	if (syscall(SYS_pivot_root, ".", "."))
		return failed(why, size, "pivot_root into %s", rootfs);
	/* The old root is now stacked under the new one: detach it. */
	if (mount(NULL, ".", NULL, MS_REC | MS_SLAVE, NULL) || umount2(".", MNT_DETACH))
		return failed(why, size, "cannot detach the old root");
	if (chdir("/"))
		return failed(why, size, "chdir /");
	return 0;
}

static int mask_path(const char *path, char *why, size_t size)
{
	struct stat st;
	if (stat(path, &st))
		return 0;
	if (S_ISDIR(st.st_mode) ? mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0") : mount("/dev/null", path, NULL, MS_BIND, NULL))
		return failed(why, size, "cannot mask %s", path);
	return 0;
}

static int readonly_path(const char *path, char *why, size_t size)
{
	if (access(path, F_OK))
		return 0;
	if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) ||
	    mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
		return failed(why, size, "cannot make %s read-only", path);
	return 0;
}

int plan_finish_root(const struct setup_plan *p, char *why, size_t size)
{
	PLAN_EACH(p, "mask", l)
	{
		if (mask_path(plan_field(l, 1), why, size))
			return -1;
	}
	PLAN_EACH(p, "readonly", l)
	{
		if (readonly_path(plan_field(l, 1), why, size))
			return -1;
	}
	if (plan_get(p, "readonlyroot") && mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL))
		return failed(why, size, "cannot make the root file system read-only");
	return 0;
}

int plan_loopback_up(char *why, size_t size)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
	int r = s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) ? -1 : 0;
	if (!r) {
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
		r = ioctl(s, SIOCSIFFLAGS, &ifr);
	}
	if (r)
		r = failed(why, size, "cannot bring the loopback interface up");
	if (s >= 0) {
		int err = errno;
		close(s);
		errno = err;
	}
	return r;
}
