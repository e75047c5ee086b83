/*
 * File descriptors for checkpoint and restore: a raw system call door for
 * the kinds that only need plain calls (each kind's TypeScript decides what
 * to call), a non-consuming peek at a pipe's contents, and sending one
 * descriptor with a small header over a unix socket.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fdio.h"
#include "napi_util.h"

/*
 * sys(nr, args): the raw system call in this process, its result as a
 * BigInt (a negative errno on failure, as the kernel returns it). Each
 * argument is a Number or BigInt taken as a 64-bit integer, or a Buffer,
 * passed as the address of its bytes (which the caller sizes for the call).
 */
napi_value js_sys(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2];
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2)
		return vj_throw_errno(env, "sys: arguments", EINVAL);
	long nr = vj_i32(env, argv[0]);
	uint32_t n = 0;
	napi_get_array_length(env, argv[1], &n);
	if (n > 6)
		return vj_throw_errno(env, "sys: more than six arguments", EINVAL);
	uint64_t a[6] = { 0 };
	for (uint32_t i = 0; i < n; i++) {
		napi_value v;
		napi_get_element(env, argv[1], i, &v);
		bool is_buffer = false;
		napi_is_buffer(env, v, &is_buffer);
		if (is_buffer) {
			void *data;
			size_t len;
			if (vj_buffer(env, v, "sys argument", &data, &len) < 0)
				return NULL;
			a[i] = (uint64_t)(uintptr_t)data;
		} else {
			a[i] = vj_u64(env, v);
		}
	}
	long r = syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
	napi_value out;
	napi_create_bigint_int64(env, r < 0 ? -(int64_t)errno : (int64_t)r, &out);
	return out;
}

/*
 * pipePeek(fd, capacity): the bytes queued in the pipe whose read end is
 * `fd`, left queued: tee(2) duplicates them into a pipe of our own of the
 * same capacity, which we then drain.
 */
napi_value js_pipe_peek(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	if (vj_args(env, info, 2, argv) < 0)
		return NULL;
	int fd = vj_i32(env, argv[0]);
	int capacity = vj_i32(env, argv[1]);
	int p[2];
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
		return vj_throw_errno(env, "pipe2", errno);
	if (capacity > 0 && fcntl(p[1], F_SETPIPE_SZ, capacity) < 0) {
		int e = errno;
		close(p[0]);
		close(p[1]);
		return vj_throw_errno(env, "fcntl(F_SETPIPE_SZ)", e);
	}
	ssize_t got = tee(fd, p[1], (size_t)(capacity > 0 ? capacity : 65536), SPLICE_F_NONBLOCK);
	if (got < 0 && errno != EAGAIN) {
		int e = errno;
		close(p[0]);
		close(p[1]);
		return vj_throw_errno(env, "tee", e);
	}
	if (got < 0)
		got = 0; /* nothing queued */
	void *data;
	napi_value buf;
	if (napi_create_buffer(env, (size_t)got, &data, &buf) != napi_ok) {
		close(p[0]);
		close(p[1]);
		return vj_throw_errno(env, "pipePeek: buffer", ENOMEM);
	}
	for (ssize_t off = 0; off < got;) {
		ssize_t n = read(p[0], (char *)data + off, (size_t)(got - off));
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;
			close(p[0]);
			close(p[1]);
			return vj_throw_errno(env, "read of the pipe copy", e);
		}
		off += n;
	}
	close(p[0]);
	close(p[1]);
	return buf;
}

/*
 * sendFd(sock, header, fd): one message holding `header` and, unless fd is
 * -1, the descriptor fd (SCM_RIGHTS). Returns the bytes sent, or -EAGAIN
 * when a non-blocking socket is full; other failures throw.
 */
napi_value js_send_fd(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	if (vj_args(env, info, 3, argv) < 0)
		return NULL;
	int sock = vj_i32(env, argv[0]);
	void *data;
	size_t len;
	if (vj_buffer(env, argv[1], "header", &data, &len) < 0)
		return NULL;
	int fd = vj_i32(env, argv[2]);
	struct iovec iov = { .iov_base = data, .iov_len = len };
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} control;
	memset(&control, 0, sizeof control);
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (fd >= 0) {
		mh.msg_control = control.buf;
		mh.msg_controllen = sizeof control.buf;
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	ssize_t n;
	do
		n = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		return vj_make_i32(env, -EAGAIN);
	if (n < 0)
		return vj_throw_errno(env, "sendmsg", errno);
	return vj_make_i32(env, (int32_t)n);
}

/* fdinfo of one descriptor, whole (an epoll or inotify set can make it long); NULL with errno set on failure. */
static char *read_fdinfo(int infodir, const char *name, size_t *len)
{
	int fd = openat(infodir, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t cap = 4096, have = 0;
	char *buf = malloc(cap);
	int err = buf ? 0 : ENOMEM;
	while (buf) {
		if (have == cap) {
			char *bigger = realloc(buf, cap * 2);
			if (!bigger) {
				err = ENOMEM;
				break;
			}
			buf = bigger;
			cap *= 2;
		}
		ssize_t n = read(fd, buf + have, cap - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = errno;
			break;
		}
		if (n == 0)
			break;
		have += (size_t)n;
	}
	close(fd);
	if (err) {
		free(buf);
		errno = err;
		return NULL;
	}
	*len = have;
	return buf;
}

static int by_number(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

/*
 * [fd, link, fdinfo, stat] for one descriptor: 1, or 0 if it was closed
 * meanwhile (ENOENT), or -errno when it could not be read (never taken for
 * closed: a descriptor left out would be lost).
 */
static int probe_one(napi_env env, int fddir, int infodir, int n, napi_value *out)
{
	char name[16], link[PATH_MAX + 1];
	snprintf(name, sizeof name, "%d", n);
	ssize_t ll = readlinkat(fddir, name, link, PATH_MAX);
	if (ll < 0)
		return errno == ENOENT ? 0 : -errno;
	size_t infolen = 0;
	char *infotext = read_fdinfo(infodir, name, &infolen);
	if (!infotext)
		return errno == ENOENT ? 0 : -errno;
	napi_value entry, v;
	napi_create_array_with_length(env, 4, &entry);
	napi_create_int32(env, n, &v);
	napi_set_element(env, entry, 0, v);
	napi_create_string_utf8(env, link, (size_t)ll, &v);
	napi_set_element(env, entry, 1, v);
	napi_create_string_utf8(env, infotext, infolen, &v);
	napi_set_element(env, entry, 2, v);
	free(infotext);
	struct stat st;
	if (fstatat(fddir, name, &st, 0) == 0) {
		/* dev, ino, mode, nlink, uid, gid, rdev, size: what the descriptor kinds look at. */
		uint64_t f[8] = { st.st_dev, st.st_ino, st.st_mode, st.st_nlink, st.st_uid, st.st_gid, st.st_rdev, (uint64_t)st.st_size };
		void *data;
		napi_create_buffer_copy(env, sizeof f, f, &data, &v);
	} else {
		napi_get_null(env, &v);
	}
	napi_set_element(env, entry, 3, v);
	*out = entry;
	return 1;
}

/*
 * probeFds(pid, fd): the descriptors of a (stopped) process as
 * [fd, link, fdinfo text, stat as 8 u64 or null], by number; with fd >= 0
 * that one only (an empty array if it is not open). One call instead of
 * four file-system calls from JavaScript per descriptor: a thousand
 * descriptors take milliseconds, not tens of them.
 */
napi_value js_probe_fds(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	if (vj_args(env, info, 2, argv) < 0)
		return NULL;
	int pid = vj_i32(env, argv[0]);
	int only = vj_i32(env, argv[1]);
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/fd", pid);
	int fddir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fddir < 0)
		return vj_throw_errno(env, path, errno);
	snprintf(path, sizeof path, "/proc/%d/fdinfo", pid);
	int infodir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (infodir < 0) {
		int e = errno;
		close(fddir);
		return vj_throw_errno(env, path, e);
	}
	int *fds = NULL;
	size_t count = 0, cap = 0;
	bool short_of_memory = false;
	if (only >= 0) {
		fds = malloc(sizeof *fds);
		if (fds)
			fds[count++] = only;
		else
			short_of_memory = true;
	} else {
		int dup_fd = dup(fddir);
		DIR *d = dup_fd < 0 ? NULL : fdopendir(dup_fd);
		if (!d) {
			int e = errno;
			if (dup_fd >= 0)
				close(dup_fd);
			close(fddir);
			close(infodir);
			return vj_throw_errno(env, "opendir of /proc/PID/fd", e);
		}
		for (struct dirent *de; (de = readdir(d));) {
			if (de->d_name[0] < '0' || de->d_name[0] > '9')
				continue;
			if (count == cap) {
				size_t more = cap ? cap * 2 : 256;
				int *grown = realloc(fds, more * sizeof *fds);
				if (!grown) {
					short_of_memory = true; /* a descriptor left out would be lost: fail instead */
					break;
				}
				fds = grown;
				cap = more;
			}
			fds[count++] = atoi(de->d_name);
		}
		closedir(d);
		if (count)
			qsort(fds, count, sizeof *fds, by_number);
	}
	if (short_of_memory) {
		free(fds);
		close(fddir);
		close(infodir);
		return vj_throw_errno(env, "probeFds: the descriptor list", ENOMEM);
	}
	napi_value list;
	napi_create_array(env, &list);
	uint32_t at = 0;
	int failed = 0;
	for (size_t i = 0; i < count && !failed; i++) {
		napi_value entry;
		int r = probe_one(env, fddir, infodir, fds[i], &entry);
		if (r > 0)
			napi_set_element(env, list, at++, entry);
		failed = r < 0 ? -r : 0;
	}
	free(fds);
	close(fddir);
	close(infodir);
	return failed ? vj_throw_errno(env, "probeFds: reading a descriptor in /proc/PID/fd or fdinfo", failed) : list;
}

static int by_string(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Whether a descriptor's link is one the outside scan reports: a pipe, a socket, or one of `paths` (sorted). */
static bool link_wanted(const char *link, char **paths, uint32_t npaths)
{
	if (!strncmp(link, "pipe:[", 6) || !strncmp(link, "socket:[", 8))
		return true;
	return link[0] == '/' && npaths && bsearch(&link, paths, npaths, sizeof *paths, by_string);
}

/* Append [pid, link] for each wanted descriptor of process `pid` (gone or not ours to read: nothing). */
static void scan_process(napi_env env, int pid, char **paths, uint32_t npaths, napi_value list, uint32_t *at)
{
	char path[64], link[PATH_MAX + 1];
	snprintf(path, sizeof path, "/proc/%d/fd", pid);
	int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return;
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return;
	}
	for (struct dirent *de; (de = readdir(d));) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		ssize_t ll = readlinkat(dfd, de->d_name, link, PATH_MAX);
		if (ll < 0)
			continue;
		link[ll] = '\0';
		if (!link_wanted(link, paths, npaths))
			continue;
		napi_value v;
		napi_create_int32(env, pid, &v);
		napi_set_element(env, list, (*at)++, v);
		napi_create_string_utf8(env, link, (size_t)ll, &v);
		napi_set_element(env, list, (*at)++, v);
	}
	closedir(d);
}

/*
 * outsideLinks(exclude, paths): one scan of /proc for who holds what: a flat
 * [pid, link, pid, link, ...] of every pipe and socket descriptor, and every
 * descriptor open on one of `paths` (FIFOs), of every process but those in
 * `exclude` (an Int32Array). Processes that end meanwhile, or whose
 * descriptors we may not read, are passed over, as a readdir would.
 */
napi_value js_outside_links(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	if (vj_args(env, info, 2, argv) < 0)
		return NULL;
	size_t nexclude = 0;
	void *data = NULL;
	if (vj_typed_array(env, argv[0], napi_int32_array, "outsideLinks: exclude", "Int32Array", &data, &nexclude) < 0)
		return NULL;
	const int32_t *exclude = data;
	uint32_t npaths = 0;
	napi_get_array_length(env, argv[1], &npaths);
	char **paths = npaths ? calloc(npaths, sizeof *paths) : NULL;
	if (npaths && !paths)
		return vj_throw_errno(env, "outsideLinks: paths", ENOMEM);
	int err = 0;
	for (uint32_t i = 0; i < npaths && !err; i++) {
		napi_value v;
		size_t len = 0;
		napi_get_element(env, argv[1], i, &v);
		if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok || !(paths[i] = malloc(len + 1)))
			err = ENOMEM;
		else
			napi_get_value_string_utf8(env, v, paths[i], len + 1, &len);
	}
	DIR *proc = err ? NULL : opendir("/proc");
	if (!err && !proc)
		err = errno;
	napi_value list;
	napi_create_array(env, &list);
	if (!err) {
		qsort(paths, npaths, sizeof *paths, by_string);
		uint32_t at = 0;
		for (struct dirent *de; (de = readdir(proc));) {
			if (de->d_name[0] < '0' || de->d_name[0] > '9')
				continue;
			int pid = atoi(de->d_name);
			bool skip = false;
			for (size_t i = 0; i < nexclude && !skip; i++)
				skip = exclude[i] == pid;
			if (!skip)
				scan_process(env, pid, paths, npaths, list, &at);
		}
		closedir(proc);
	}
	for (uint32_t i = 0; i < npaths; i++)
		free(paths[i]);
	free(paths);
	return err ? vj_throw_errno(env, "outsideLinks", err) : list;
}
