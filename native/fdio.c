/*
 * File descriptors for checkpoint and restore: a raw system call door for
 * the kinds that only need plain calls (each kind's TypeScript decides what
 * to call), a non-consuming peek at a pipe's contents, and sending one
 * descriptor with a small header over a unix socket.
 */

#include <errno.h>
#include <fcntl.h>
#include <string.h>
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
