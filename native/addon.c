/*
 * The Node-API addon: the few things JavaScript cannot do. It exposes small,
 * typed functions; all policy stays in TypeScript. Errors are thrown as Error
 * objects carrying `errno`, `code` and `syscall`, like Node's own.
 */

#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <node_api.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "caller.h"
#include "cpu.h"
#include "napi_util.h"
#include "pagecopy.h"
#include "incaller.h"
#include "features.h"
#include "shimcalls.h"
#include "protocol.h"
#include "ptrace.h"
#include "supervisor.h"

#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

_Static_assert(sizeof(struct answer) == 24, "answer table layout is shared with src/native.ts");

/* ---- helpers ------------------------------------------------------------ */

#define CALL(env, expr)                                                   \
	do {                                                              \
		if ((expr) != napi_ok) {                                  \
			throw_message(env, "internal Node-API error: " #expr); \
			return NULL;                                      \
		}                                                         \
	} while (0)

static void throw_message(napi_env env, const char *msg)
{
	bool pending = false;
	napi_is_exception_pending(env, &pending);
	if (!pending)
		napi_throw_error(env, NULL, msg);
}

/* ---- launch: control socket and pidfds ---------------------------------- */

static napi_value js_socketpair(napi_env env, napi_callback_info info)
{
	(void)info;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return vj_throw_errno(env, "socketpair", errno);
	napi_value arr;
	CALL(env, napi_create_array_with_length(env, 2, &arr));
	napi_set_element(env, arr, 0, vj_make_i32(env, sv[0]));
	napi_set_element(env, arr, 1, vj_make_i32(env, sv[1]));
	return arr;
}

/* sendMessage(fd, buffer): one SEQPACKET message. */
static napi_value js_send_message(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	if (vj_args(env, info, 2, argv))
		return NULL;
	void *data;
	size_t len;
	CALL(env, napi_get_buffer_info(env, argv[1], &data, &len));
	if (send(vj_i32(env, argv[0]), data, len, MSG_NOSIGNAL) < 0)
		return vj_throw_errno(env, "send", errno);
	return vj_undefined(env);
}

/* recvCtl(fd, timeoutMs): {type, a, b, fd} or null at end of stream. */
static napi_value js_recv_ctl(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	if (vj_args(env, info, 2, argv))
		return NULL;
	int fd = vj_i32(env, argv[0]);
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r;
	do
		r = poll(&p, 1, vj_i32(env, argv[1]));
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return vj_throw_errno(env, "recv (control socket)", ETIMEDOUT);
	struct ctl_msg m;
	struct iovec iov = { .iov_base = &m, .iov_len = sizeof m };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
	ssize_t n;
	do
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		return vj_throw_errno(env, "recv (control socket)", ETIMEDOUT);
	if (n < 0)
		return vj_throw_errno(env, "recvmsg", errno);
	napi_value out;
	if (n == 0) {
		napi_get_null(env, &out);
		return out;
	}
	if ((size_t)n != sizeof m)
		return vj_throw_errno(env, "recvmsg (short control message)", EPROTO);
	int passed = -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			memcpy(&passed, CMSG_DATA(c), sizeof passed);
	CALL(env, napi_create_object(env, &out));
	napi_set_named_property(env, out, "type", vj_make_i32(env, (int32_t)m.type));
	napi_set_named_property(env, out, "a", vj_make_i32(env, m.a));
	napi_value b;
	napi_create_int64(env, m.b, &b);
	napi_set_named_property(env, out, "b", b);
	napi_set_named_property(env, out, "fd", vj_make_i32(env, passed));
	return out;
}

/* pidfdGetfd(pidfd, targetFd): a duplicate of the target's fd (close-on-exec). */
static napi_value js_pidfd_getfd(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	if (vj_args(env, info, 2, argv))
		return NULL;
	int fd = (int)syscall(SYS_pidfd_getfd, vj_i32(env, argv[0]), vj_i32(env, argv[1]), 0);
	if (fd < 0)
		return vj_throw_errno(env, "pidfd_getfd", errno);
	return vj_make_i32(env, fd);
}

static napi_value js_pidfd_send_signal(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	if (vj_args(env, info, 2, argv))
		return NULL;
	if (syscall(SYS_pidfd_send_signal, vj_i32(env, argv[0]), vj_i32(env, argv[1]), NULL, 0))
		return vj_throw_errno(env, "pidfd_send_signal", errno);
	return vj_undefined(env);
}

/* ---- caller memory ------------------------------------------------------ */

static napi_value js_read_mem(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	if (vj_args(env, info, 3, argv))
		return NULL;
	size_t len = (size_t)vj_i32(env, argv[2]);
	void *data;
	napi_value buf;
	CALL(env, napi_create_buffer(env, len, &data, &buf));
	int err = caller_read((pid_t)vj_i32(env, argv[0]), vj_u64(env, argv[1]), data, len);
	if (err)
		return vj_throw_errno(env, "process_vm_readv", err);
	return buf;
}

static napi_value js_write_mem(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	if (vj_args(env, info, 3, argv))
		return NULL;
	void *data;
	size_t len;
	CALL(env, napi_get_buffer_info(env, argv[2], &data, &len));
	int err = caller_write((pid_t)vj_i32(env, argv[0]), vj_u64(env, argv[1]), data, len);
	if (err)
		return vj_throw_errno(env, "process_vm_writev", err);
	return vj_undefined(env);
}

static napi_value js_read_string(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	if (vj_args(env, info, 3, argv))
		return NULL;
	size_t max = (size_t)vj_i32(env, argv[2]);
	char *buf = malloc(max ? max : 1);
	if (!buf)
		return vj_throw_errno(env, "malloc", ENOMEM);
	size_t len = 0;
	int err = caller_read_string((pid_t)vj_i32(env, argv[0]), vj_u64(env, argv[1]), buf, max, &len);
	napi_value out = NULL;
	if (err)
		vj_throw_errno(env, "process_vm_readv (string)", err);
	else
		napi_create_string_utf8(env, buf, len, &out);
	free(buf);
	return out;
}

/* ---- syscall probing ----------------------------------------------------- */

/* probeSyscalls([[nr, [a0..a5]], ...]): the raw result (or -errno) of each call,
 * run one after another in a throwaway child so that a call with side effects
 * cannot disturb us. A call that kills the child ends the list early: the
 * returned array is shorter. Between fork and exit only raw syscalls. */
#define PROBE_MAX 256
static napi_value js_probe_syscalls(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	if (vj_args(env, info, 1, argv))
		return NULL;
	uint32_t count = 0;
	if (napi_get_array_length(env, argv[0], &count) != napi_ok || count > PROBE_MAX) {
		napi_throw_type_error(env, NULL, "probeSyscalls takes an array of at most 256 [nr, args] pairs");
		return NULL;
	}
	static __thread long nrs[PROBE_MAX];
	static __thread uint64_t args[PROBE_MAX][6];
	for (uint32_t k = 0; k < count; k++) {
		napi_value pair, v, list;
		napi_get_element(env, argv[0], k, &pair);
		napi_get_element(env, pair, 0, &v);
		nrs[k] = vj_i32(env, v);
		napi_get_element(env, pair, 1, &list);
		for (uint32_t i = 0; i < 6; i++) {
			args[k][i] = 0;
			if (napi_get_element(env, list, i, &v) == napi_ok) {
				napi_valuetype t;
				napi_typeof(env, v, &t);
				if (t == napi_bigint || t == napi_number)
					args[k][i] = vj_u64(env, v);
			}
		}
	}
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC))
		return vj_throw_errno(env, "pipe2", errno);
	pid_t pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
	if (pid == 0) {
		for (uint32_t k = 0; k < count; k++) {
			const uint64_t *a = args[k];
			long r = syscall(nrs[k], a[0], a[1], a[2], a[3], a[4], a[5]);
			long out = r < 0 ? -(long)errno : r;
			syscall(SYS_write, pipefd[1], &out, sizeof out);
		}
		syscall(SYS_exit_group, 0);
	}
	close(pipefd[1]);
	if (pid < 0) {
		close(pipefd[0]);
		return vj_throw_errno(env, "fork", errno);
	}
	napi_value out;
	napi_create_array(env, &out);
	for (uint32_t k = 0; k < count; k++) {
		long result;
		ssize_t n;
		do
			n = read(pipefd[0], &result, sizeof result);
		while (n < 0 && errno == EINTR);
		if (n != sizeof result)
			break;
		napi_value v;
		napi_create_int64(env, result, &v);
		napi_set_element(env, out, k, v);
	}
	close(pipefd[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return out;
}

/* ---- supervisor ---------------------------------------------------------- */

struct sup_handle {
	struct supervisor s;
	uv_poll_t poll;
	napi_env env;
	napi_ref on_notify;
	napi_ref on_idle;
	napi_async_context async;
	int stopped;
	int poll_closed;
	int finalized;
};

static void call_js(struct sup_handle *h, napi_ref fn_ref, size_t argc, napi_value *argv)
{
	napi_env env = h->env;
	napi_value fn, recv, result;
	if (!fn_ref || napi_get_reference_value(env, fn_ref, &fn) != napi_ok || !fn)
		return;
	napi_get_global(env, &recv); /* make_callback needs an object receiver */
	/* make_callback so promises and nextTick run after the handler, as for any I/O event. */
	if (napi_make_callback(env, h->async, recv, fn, argc, argv, &result) != napi_ok) {
		napi_value exc;
		if (napi_get_and_clear_last_exception(env, &exc) == napi_ok)
			napi_fatal_exception(env, exc);
	}
}

static void deliver_queued(struct sup_handle *h)
{
	napi_env env = h->env;
	struct queued_notif q;
	while (!h->stopped && sup_pop(&h->s, &q)) {
		napi_handle_scope scope;
		napi_open_handle_scope(env, &scope);
		int arch = sup_arch_index(q.notif.data.arch);
		napi_value argv[12];
		argv[0] = vj_make_u64(env, q.notif.id);
		argv[1] = vj_make_i32(env, (int32_t)q.notif.pid);
		argv[2] = vj_make_i32(env, arch);
		argv[3] = vj_make_i32(env, q.notif.data.nr);
		for (int i = 0; i < 6; i++)
			argv[4 + i] = vj_make_u64(env, q.notif.data.args[i]);
		argv[10] = vj_make_u64(env, q.notif.data.instruction_pointer);
		napi_create_double(env, (double)q.t0_ns, &argv[11]);
		call_js(h, h->on_notify, 12, argv);
		napi_close_handle_scope(env, scope);
	}
}

static void on_wake(uv_poll_t *poll, int status, int events)
{
	(void)status;
	(void)events;
	struct sup_handle *h = poll->data;
	uint64_t count;
	if (read(h->s.wake_fd, &count, sizeof count) < 0) {
		/* EAGAIN: spurious wake-up */
	}
	deliver_queued(h);
	if (!h->stopped && atomic_load(&h->s.hung_up)) {
		napi_handle_scope scope;
		napi_open_handle_scope(h->env, &scope);
		call_js(h, h->on_idle, 0, NULL);
		napi_close_handle_scope(h->env, scope);
	}
}

static void on_poll_closed(uv_handle_t *handle)
{
	struct sup_handle *h = handle->data;
	h->poll_closed = 1;
	if (h->finalized) {
		sup_destroy(&h->s);
		free(h);
	}
}

static void stop_handle(struct sup_handle *h)
{
	if (h->stopped)
		return;
	h->stopped = 1;
	sup_stop(&h->s);
	/* Closing the listener fails any call still waiting with ENOSYS: nothing hangs. */
	close(h->s.listener);
	h->s.listener = -1;
	uv_poll_stop(&h->poll);
	uv_close((uv_handle_t *)&h->poll, on_poll_closed);
	if (h->on_notify)
		napi_delete_reference(h->env, h->on_notify);
	if (h->on_idle)
		napi_delete_reference(h->env, h->on_idle);
	napi_async_destroy(h->env, h->async);
	h->on_notify = h->on_idle = NULL;
}

static void finalize_handle(napi_env env, void *data, void *hint)
{
	(void)env;
	(void)hint;
	struct sup_handle *h = data;
	stop_handle(h);
	h->finalized = 1;
	if (h->poll_closed) {
		sup_destroy(&h->s);
		free(h);
	}
}

static struct sup_handle *get_handle(napi_env env, napi_value v)
{
	void *p = NULL;
	if (napi_get_value_external(env, v, &p) != napi_ok || !p) {
		napi_throw_type_error(env, NULL, "not a supervisor handle");
		return NULL;
	}
	return p;
}

static int copy_table(napi_env env, napi_value buf, struct answer *dst)
{
	void *data;
	size_t len;
	if (napi_get_buffer_info(env, buf, &data, &len) != napi_ok || len != sizeof(struct answer) * SUP_MAX_NR) {
		napi_throw_type_error(env, NULL, "answer table must be a Buffer of 1024 entries");
		return -1;
	}
	memcpy(dst, data, len);
	return 0;
}

/* supervisorStart(listenerFd, nativeAnswers, tableX86_64, tableI386, pool, onNotify, onIdle) */
static napi_value js_supervisor_start(napi_env env, napi_callback_info info)
{
	napi_value argv[7];
	if (vj_args(env, info, 7, argv))
		return NULL;
	struct sup_handle *h = calloc(1, sizeof *h);
	if (!h)
		return vj_throw_errno(env, "calloc", ENOMEM);
	bool native_answers = true;
	napi_get_value_bool(env, argv[1], &native_answers);
	int err = sup_init(&h->s, vj_i32(env, argv[0]), native_answers);
	if (err) {
		sup_destroy(&h->s);
		free(h);
		return vj_throw_errno(env, "supervisor init", err);
	}
	void *pool;
	size_t pool_len;
	if (copy_table(env, argv[2], h->s.table[0]) || copy_table(env, argv[3], h->s.table[1]) ||
	    napi_get_buffer_info(env, argv[4], &pool, &pool_len) != napi_ok) {
		sup_destroy(&h->s);
		free(h);
		return NULL;
	}
	for (int a = 0; a < SUP_ARCHES; a++)
		for (int nr = 0; nr < SUP_MAX_NR; nr++) {
			const struct answer *ans = &h->s.table[a][nr];
			if (ans->kind == ANS_STRUCT && ((size_t)ans->off + ans->len > pool_len || ans->arg > 5)) {
				sup_destroy(&h->s);
				free(h);
				napi_throw_range_error(env, NULL, "answer table entry points outside the pool");
				return NULL;
			}
		}
	sup_set_pool(&h->s, pool, pool_len);
	h->env = env;
	napi_create_reference(env, argv[5], 1, &h->on_notify);
	napi_create_reference(env, argv[6], 1, &h->on_idle);
	napi_value name, resource;
	napi_create_string_utf8(env, "vjail:supervisor", NAPI_AUTO_LENGTH, &name);
	napi_create_object(env, &resource);
	napi_async_init(env, resource, name, &h->async);
	uv_loop_t *loop;
	napi_get_uv_event_loop(env, &loop);
	uv_poll_init(loop, &h->poll, h->s.wake_fd);
	h->poll.data = h;
	uv_poll_start(&h->poll, UV_READABLE, on_wake);
	err = sup_start(&h->s);
	if (err) {
		stop_handle(h);
		return vj_throw_errno(env, "pthread_create", err);
	}
	napi_value ext;
	CALL(env, napi_create_external(env, h, finalize_handle, NULL, &ext));
	return ext;
}

/* supervisorRespond(h, id, value, errno, flags, auditArch, nr, t0): 0 or errno (ENOENT: caller gone). */
static napi_value js_supervisor_respond(napi_env env, napi_callback_info info)
{
	napi_value argv[8];
	if (vj_args(env, info, 8, argv))
		return NULL;
	struct sup_handle *h = get_handle(env, argv[0]);
	if (!h)
		return NULL;
	if (h->stopped)
		return vj_make_i32(env, EBADF);
	uint64_t id = vj_u64(env, argv[1]);
	int err = sup_respond(&h->s, id, (int64_t)vj_u64(env, argv[2]), vj_i32(env, argv[3]),
			      (uint32_t)vj_i32(env, argv[4]));
	double t0 = 0;
	napi_get_value_double(env, argv[7], &t0);
	if (!err && t0 > 0)
		sup_record(&h->s, (uint32_t)vj_u64(env, argv[5]), vj_i32(env, argv[6]), (uint64_t)t0);
	return vj_make_i32(env, err);
}

static napi_value js_supervisor_id_valid(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	if (vj_args(env, info, 2, argv))
		return NULL;
	struct sup_handle *h = get_handle(env, argv[0]);
	if (!h)
		return NULL;
	uint64_t id = vj_u64(env, argv[1]);
	napi_value v;
	napi_get_boolean(env, !h->stopped && ioctl(h->s.listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0, &v);
	return v;
}

/* supervisorAddfd(h, id, srcFd, cloexec): installs srcFd in the caller and answers with its number. */
static napi_value js_supervisor_addfd(napi_env env, napi_callback_info info)
{
	napi_value argv[4];
	if (vj_args(env, info, 4, argv))
		return NULL;
	struct sup_handle *h = get_handle(env, argv[0]);
	if (!h)
		return NULL;
	bool cloexec = false;
	napi_get_value_bool(env, argv[3], &cloexec);
	struct seccomp_notif_addfd add = {
		.id = vj_u64(env, argv[1]),
		.flags = SECCOMP_ADDFD_FLAG_SEND,
		.srcfd = (uint32_t)vj_i32(env, argv[2]),
		.newfd_flags = cloexec ? O_CLOEXEC : 0,
	};
	int fd = ioctl(h->s.listener, SECCOMP_IOCTL_NOTIF_ADDFD, &add);
	if (fd < 0)
		return vj_throw_errno(env, "SECCOMP_IOCTL_NOTIF_ADDFD", errno);
	return vj_make_i32(env, fd);
}

/* supervisorStats(h): Buffer with struct sup_stat[2][1024]. */
static napi_value js_supervisor_stats(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	if (vj_args(env, info, 1, argv))
		return NULL;
	struct sup_handle *h = get_handle(env, argv[0]);
	if (!h)
		return NULL;
	size_t len = sizeof(struct sup_stat) * SUP_ARCHES * SUP_MAX_NR;
	void *data;
	napi_value buf;
	CALL(env, napi_create_buffer(env, len, &data, &buf));
	pthread_mutex_lock(&h->s.stats_mu);
	memcpy(data, h->s.stats, len);
	pthread_mutex_unlock(&h->s.stats_mu);
	return buf;
}

static napi_value js_supervisor_stop(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	if (vj_args(env, info, 1, argv))
		return NULL;
	struct sup_handle *h = get_handle(env, argv[0]);
	if (!h)
		return NULL;
	stop_handle(h);
	return vj_undefined(env);
}

/* ---- module ------------------------------------------------------------- */

static napi_value init(napi_env env, napi_value exports)
{
	const struct {
		const char *name;
		napi_callback fn;
	} fns[] = {
		{ "socketpair", js_socketpair },
		{ "sendMessage", js_send_message },
		{ "recvCtl", js_recv_ctl },
		{ "pidfdGetfd", js_pidfd_getfd },
		{ "pidfdSendSignal", js_pidfd_send_signal },
		{ "readMem", js_read_mem },
		{ "writeMem", js_write_mem },
		{ "readString", js_read_string },
		{ "probeSyscalls", js_probe_syscalls },
		{ "supervisorStart", js_supervisor_start },
		{ "supervisorRespond", js_supervisor_respond },
		{ "supervisorIdValid", js_supervisor_id_valid },
		{ "supervisorAddfd", js_supervisor_addfd },
		{ "supervisorStats", js_supervisor_stats },
		{ "supervisorStop", js_supervisor_stop },
		{ "incallerStart", incaller_js_start },
		{ "incallerCommand", incaller_js_command },
		{ "memfdSealed", js_memfd_sealed },
		{ "shimMemfdCreate", js_shim_memfd_create },
		{ "shimPidfdOpen", js_shim_pidfd_open },
		{ "probeFeatures", js_probe_features },
		{ "ptraceSeize", js_ptrace_seize },
		{ "ptraceInterrupt", js_ptrace_interrupt },
		{ "ptraceWait", js_ptrace_wait },
		{ "ptraceResume", js_ptrace_resume },
		{ "ptraceGetRegset", js_ptrace_get_regset },
		{ "ptraceSetRegset", js_ptrace_set_regset },
		{ "ptraceGetSigmask", js_ptrace_get_sigmask },
		{ "ptraceSetSigmask", js_ptrace_set_sigmask },
		{ "ptraceRseqConfig", js_ptrace_rseq_config },
		{ "ptracePeekSiginfo", js_ptrace_peek_siginfo },
		{ "ptraceSetOptions", js_ptrace_set_options },
		{ "ptraceGetEventMsg", js_ptrace_get_event_msg },
		{ "cpuXstate", js_cpu_xstate },
		{ "pageRead", js_page_read },
		{ "pageWrite", js_page_write },
		{ "syncFileRange", js_sync_file_range },
	};
	for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
		napi_value f;
		napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
		napi_set_named_property(env, exports, fns[i].name, f);
	}
	napi_value v;
	napi_create_int32(env, sizeof(struct sup_stat), &v);
	napi_set_named_property(env, exports, "statSize", v);
	napi_create_int32(env, SUP_HIST_BUCKETS, &v);
	napi_set_named_property(env, exports, "histBuckets", v);
	return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
