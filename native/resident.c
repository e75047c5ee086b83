/*
 * The resident supervisor's socket (src/resident/): a SOCK_SEQPACKET unix
 * socket the native `vjail run` front end connects to, its connections,
 * and a watch on Node's loop that says when a descriptor is readable (a
 * connection has a message; a pidfd's process has exited).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "fdrecv.h"
#include "napi_util.h"
#include "resident.h"
#include "resident_proto.h"

static int bind_at(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
	if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 64)) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/* Does a live server answer at path? */
static int answers(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
	int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
	close(fd);
	return ok;
}

/*
 * residentListen(path): the listening socket's fd, or -1 when a live
 * resident already listens there. A socket file nobody answers on (its
 * resident was killed) is replaced.
 */
napi_value js_resident_listen(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	if (vj_args(env, info, 1, argv))
		return NULL;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	size_t len;
	if (napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len + 1 >= sizeof path)
		return vj_throw_errno(env, "residentListen: path", ENAMETOOLONG);
	int fd = bind_at(path);
	if (fd == -EADDRINUSE) {
		if (answers(path))
			return vj_make_i32(env, -1);
		unlink(path);
		fd = bind_at(path);
	}
	if (fd < 0)
		return vj_throw_errno(env, "bind", -fd);
	return vj_make_i32(env, fd);
}

/* residentAccept(fd): a connection from a process of our own user, or -1 when none is waiting. */
napi_value js_resident_accept(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	if (vj_args(env, info, 1, argv))
		return NULL;
	int lfd = vj_i32(env, argv[0]);
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0 && errno == EINTR)
			continue;
		if (fd < 0)
			return vj_make_i32(env, -1);
		struct ucred cred;
		socklen_t clen = sizeof cred;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) || cred.uid != geteuid()) {
			close(fd); /* another user's: the directory's mode should have stopped it */
			continue;
		}
		return vj_make_i32(env, fd);
	}
}

/*
 * residentRecv(fd): the next message as {data, fd} (fd: a descriptor it
 * carried, else -1), {data: empty} when the peer has gone, or null when
 * nothing is waiting.
 */
napi_value js_resident_recv(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	if (vj_args(env, info, 1, argv))
		return NULL;
	static char buf[RESIDENT_MAX_MSG];
	int fd;
	ssize_t n = vj_recv_with_fd(vj_i32(env, argv[0]), buf, sizeof buf, &fd);
	napi_value out;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		napi_get_null(env, &out);
		return out;
	}
	if (n < 0)
		n = 0; /* a reset connection is a gone peer */
	napi_value data;
	void *p;
	napi_create_buffer_copy(env, (size_t)n, buf, &p, &data);
	napi_create_object(env, &out);
	napi_set_named_property(env, out, "data", data);
	napi_set_named_property(env, out, "fd", vj_make_i32(env, fd));
	return out;
}

struct watch {
	uv_poll_t poll;
	napi_env env;
	napi_ref callback;
	int closed;    /* uv_close called */
	int released;  /* libuv is done with it */
	int finalized; /* JavaScript is done with it */
};

static void on_readable(uv_poll_t *poll, int status, int events)
{
	(void)status;
	(void)events;
	struct watch *w = poll->data;
	napi_handle_scope scope;
	napi_open_handle_scope(w->env, &scope);
	napi_value cb, global, result;
	napi_get_reference_value(w->env, w->callback, &cb);
	napi_get_global(w->env, &global);
	napi_make_callback(w->env, NULL, global, cb, 0, NULL, &result);
	napi_close_handle_scope(w->env, scope);
}

/* Freed once both libuv and the JavaScript handle are done with it. */
static void on_closed(uv_handle_t *h)
{
	struct watch *w = h->data;
	w->released = 1;
	if (w->finalized)
		free(w);
}

static void close_watch(struct watch *w)
{
	if (w->closed)
		return;
	w->closed = 1;
	uv_poll_stop(&w->poll);
	uv_close((uv_handle_t *)&w->poll, on_closed);
}

static void watch_finalize(napi_env env, void *data, void *hint)
{
	(void)hint;
	struct watch *w = data;
	napi_delete_reference(env, w->callback);
	w->finalized = 1;
	close_watch(w);
	if (w->released)
		free(w);
}

/* fdWatch(fd, callback): call callback on Node's loop whenever fd is readable (or hung up). */
napi_value js_resident_watch(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	if (vj_args(env, info, 2, argv))
		return NULL;
	uv_loop_t *loop;
	if (napi_get_uv_event_loop(env, &loop) != napi_ok)
		return vj_throw_errno(env, "fdWatch: loop", EINVAL);
	struct watch *w = calloc(1, sizeof *w);
	if (!w)
		return vj_throw_errno(env, "fdWatch", ENOMEM);
	w->env = env;
	if (uv_poll_init(loop, &w->poll, vj_i32(env, argv[0]))) {
		free(w);
		return vj_throw_errno(env, "uv_poll_init", EINVAL);
	}
	w->poll.data = w;
	napi_create_reference(env, argv[1], 1, &w->callback);
	uv_poll_start(&w->poll, UV_READABLE | UV_DISCONNECT, on_readable);
	napi_value ext;
	napi_create_external(env, w, watch_finalize, NULL, &ext);
	return ext;
}

/* fdUnwatch(handle): stop calling (before the fd is closed). */
napi_value js_resident_unwatch(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	if (vj_args(env, info, 1, argv))
		return NULL;
	struct watch *w;
	if (napi_get_value_external(env, argv[0], (void **)&w) != napi_ok)
		return vj_throw_errno(env, "fdUnwatch", EINVAL);
	close_watch(w);
	return vj_undefined(env);
}
