/*
 * The supervisor as Node sees it, and who receives notifications.
 *
 * Two receivers, one at a time (a notification goes to whoever receives
 * first, so they must not both receive):
 *  - the supervisor thread (supervisor.c): answers known answers at once and
 *    queues the rest for JavaScript, waking the Node loop through an eventfd.
 *    Best when JavaScript is rarely needed: the Node loop stays out of it.
 *  - the Node loop itself, polling the listener: each call that needs
 *    JavaScript costs one wake-up (caller -> loop) instead of two
 *    (caller -> thread -> loop). Known answers are still given in C.
 * Mode "auto" starts with the thread and moves receiving to the loop while
 * most notifications need JavaScript, and back when few do.
 */
#include "supervisor_napi.h"
#include "napi_util.h"
#include "seccomp_compat.h"
#include "supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <uv.h>

enum receiver_mode { MODE_AUTO = 0, MODE_THREAD = 1, MODE_LOOP = 2 };

/* Auto mode moves receiving to the loop when at least half of WINDOW_TO_LOOP
 * notifications needed JavaScript, and back to the thread when fewer than a
 * quarter of WINDOW_TO_THREAD did: the gap keeps it from flapping. */
#define WINDOW_TO_LOOP 64
#define WINDOW_TO_THREAD 256
/* Notifications the loop takes per wake-up before letting other work run. */
#define LOOP_BATCH 64

struct sup_handle {
	struct supervisor s;
	uv_poll_t wake_poll; /* the thread's eventfd */
	uv_poll_t listen_poll; /* the listener, while the loop receives */
	int listen_poll_ok;
	napi_env env;
	napi_ref on_notify;
	napi_ref on_idle;
	napi_async_context async;
	int mode;
	int loop_receives; /* 1 while the Node loop receives and the thread is paused */
	uint64_t js_count; /* notifications given to JavaScript */
	uint64_t window_js, window_native; /* the counts when the current window began */
	uint32_t switches;
	int idle_reported;
	int stopped;
	int open_polls; /* uv handles not yet closed */
	int finalized;
};

static uint64_t native_count(struct sup_handle *h)
{
	return atomic_load_explicit(&h->s.native_answered, memory_order_relaxed);
}

static void start_window(struct sup_handle *h)
{
	h->window_js = h->js_count;
	h->window_native = native_count(h);
}

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

static void deliver(struct sup_handle *h, const struct seccomp_notif *n, uint64_t t0_ns)
{
	napi_env env = h->env;
	napi_handle_scope scope;
	napi_open_handle_scope(env, &scope);
	napi_value argv[12];
	argv[0] = vj_make_u64(env, n->id);
	argv[1] = vj_make_i32(env, (int32_t)n->pid);
	argv[2] = vj_make_i32(env, sup_arch_index(n->data.arch));
	argv[3] = vj_make_i32(env, n->data.nr);
	for (int i = 0; i < 6; i++)
		argv[4 + i] = vj_make_u64(env, n->data.args[i]);
	argv[10] = vj_make_u64(env, n->data.instruction_pointer);
	napi_create_double(env, (double)t0_ns, &argv[11]);
	h->js_count++;
	call_js(h, h->on_notify, 12, argv);
	napi_close_handle_scope(env, scope);
}

static void deliver_queued(struct sup_handle *h)
{
	struct queued_notif q;
	while (!h->stopped && sup_pop(&h->s, &q))
		deliver(h, &q.notif, q.t0_ns);
}

static void report_idle(struct sup_handle *h)
{
	if (h->stopped || h->idle_reported)
		return;
	h->idle_reported = 1;
	napi_handle_scope scope;
	napi_open_handle_scope(h->env, &scope);
	call_js(h, h->on_idle, 0, NULL);
	napi_close_handle_scope(h->env, scope);
}

static void on_listener(uv_poll_t *poll, int status, int events);

static void receive_on_loop(struct sup_handle *h)
{
	sup_pause(&h->s);
	deliver_queued(h); /* what the thread queued before it stopped */
	if (h->stopped)
		return;
	h->loop_receives = 1;
	uv_poll_start(&h->listen_poll, UV_READABLE, on_listener);
}

static void receive_on_thread(struct sup_handle *h)
{
	uv_poll_stop(&h->listen_poll);
	h->loop_receives = 0;
	int err = sup_start(&h->s);
	if (err) /* no thread: keep receiving here */
		receive_on_loop(h);
}

/* Auto mode: move receiving to where this window's notifications were best served. */
static void maybe_switch(struct sup_handle *h)
{
	if (h->mode != MODE_AUTO || h->stopped || !h->listen_poll_ok || atomic_load(&h->s.hung_up))
		return;
	uint64_t js = h->js_count - h->window_js;
	uint64_t total = js + (native_count(h) - h->window_native);
	if (!h->loop_receives && total >= WINDOW_TO_LOOP) {
		if (js * 2 >= total) {
			receive_on_loop(h);
			h->switches++;
		}
		start_window(h);
	} else if (h->loop_receives && total >= WINDOW_TO_THREAD) {
		if (js * 4 < total) {
			receive_on_thread(h);
			h->switches++;
		}
		start_window(h);
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
	if (atomic_load(&h->s.hung_up))
		report_idle(h);
	else
		maybe_switch(h);
}

/* The loop's receive. The listener is read only after poll(2) says a
 * notification is waiting, so the loop never blocks in the kernel: only this
 * receiver exists while it runs, and a waiting notification's count in the
 * kernel is not taken back when its caller dies (the receive then fails
 * with ENOENT instead of waiting). */
static void on_listener(uv_poll_t *handle, int status, int events)
{
	(void)status;
	(void)events;
	struct sup_handle *h = handle->data;
	union sup_notif_buf buf;
	size_t size = sup_notif_buf_size(&h->s);
	for (int i = 0; i < LOOP_BATCH && !h->stopped && h->loop_receives; i++) {
		struct pollfd p = { .fd = h->s.listener, .events = POLLIN };
		if (poll(&p, 1, 0) <= 0)
			break;
		if (!(p.revents & POLLIN)) {
			if (p.revents & (POLLHUP | POLLERR | POLLNVAL)) {
				/* Every filtered task has exited. */
				uv_poll_stop(&h->listen_poll);
				atomic_store(&h->s.hung_up, 1);
				report_idle(h);
			}
			return;
		}
		memset(&buf, 0, size);
		if (ioctl(h->s.listener, SECCOMP_IOCTL_NOTIF_RECV, &buf.n) < 0) {
			if (errno == EINTR || errno == ENOENT) /* ENOENT: the caller went away first */
				continue;
			atomic_store(&h->s.thread_error, errno);
			uv_poll_stop(&h->listen_poll);
			return;
		}
		uint64_t t0 = sup_now_ns();
		if (sup_answer_natively(&h->s, &buf.n, t0) < 0)
			deliver(h, &buf.n, t0);
	}
	maybe_switch(h);
}

static void on_poll_closed(uv_handle_t *handle)
{
	struct sup_handle *h = handle->data;
	if (--h->open_polls > 0)
		return;
	/* The thread is joined (sup_stop) and nothing polls the eventfd: close it
	 * now, not when the collector finalizes the handle, which a long-lived
	 * process may not do for a long time (one eventfd per finished jail). */
	if (h->s.wake_fd >= 0) {
		close(h->s.wake_fd);
		h->s.wake_fd = -1;
	}
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
	/* The receiving thread is joined: its per-caller descriptors (a status file and a pidfd
	 * per process it answered) go now, not when the collector finalizes the handle, which a
	 * long-lived process (the resident) may not do for many jails. */
	of_release(&h->s.open_fast);
	aw_release(&h->s.advice);
	/* Closing the listener fails any call still waiting with ENOSYS: nothing hangs. */
	uv_poll_stop(&h->wake_poll);
	uv_close((uv_handle_t *)&h->wake_poll, on_poll_closed);
	if (h->listen_poll_ok) {
		uv_poll_stop(&h->listen_poll);
		uv_close((uv_handle_t *)&h->listen_poll, on_poll_closed);
	}
	close(h->s.listener);
	h->s.listener = -1;
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
	if (h->open_polls == 0) {
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

/* Arguments of a call whose first is the handle; NULL (and a pending exception) if they are not. */
static struct sup_handle *handle_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv)
{
	return vj_args(env, info, n, argv) ? NULL : get_handle(env, argv[0]);
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

/* Tables and pool into h->s; throws and returns -1 if they do not fit together. */
static int load_answers(napi_env env, struct sup_handle *h, napi_value x86_64, napi_value i386, napi_value pool_buf)
{
	void *pool;
	size_t pool_len;
	if (copy_table(env, x86_64, h->s.table[0]) || copy_table(env, i386, h->s.table[1]))
		return -1;
	if (vj_buffer(env, pool_buf, "the answer pool", &pool, &pool_len))
		return -1;
	for (int a = 0; a < SUP_ARCHES; a++)
		for (int nr = 0; nr < SUP_MAX_NR; nr++) {
			const struct answer *ans = &h->s.table[a][nr];
			if (ans->kind == ANS_STRUCT && ((size_t)ans->off + ans->len > pool_len || ans->arg > 5)) {
				napi_throw_range_error(env, NULL, "answer table entry points outside the pool");
				return -1;
			}
		}
	int err = sup_set_pool(&h->s, pool, pool_len);
	if (err) {
		vj_throw_errno(env, "malloc", err);
		return -1;
	}
	return 0;
}

/* supervisorStart(listenerFd, nativeAnswers, tableX86_64, tableI386, pool, onNotify, onIdle,
 *                 { mode: 0 auto | 1 thread | 2 loop, syncWakeUp: boolean, openFast: boolean, trackIdentity: boolean,
 *                   spin: boolean (keepawake.h), watchAdvice: boolean (advicewatch.h) }) */
napi_value js_supervisor_start(napi_env env, napi_callback_info info)
{
	napi_value argv[8], v;
	if (vj_args(env, info, 8, argv))
		return NULL;
	int mode = -1;
	bool sync_wake_up = true;
	if (napi_get_named_property(env, argv[7], "mode", &v) == napi_ok)
		mode = vj_i32(env, v);
	if (napi_get_named_property(env, argv[7], "syncWakeUp", &v) == napi_ok)
		napi_get_value_bool(env, v, &sync_wake_up);
	if (mode < MODE_AUTO || mode > MODE_LOOP) {
		napi_throw_range_error(env, NULL, "supervisor mode must be 0 (auto), 1 (thread) or 2 (loop)");
		return NULL;
	}
	struct sup_handle *h = calloc(1, sizeof *h);
	if (!h)
		return vj_throw_errno(env, "calloc", ENOMEM);
	bool native_answers = true;
	napi_get_value_bool(env, argv[1], &native_answers);
	int err = sup_init(&h->s, vj_i32(env, argv[0]), native_answers, sync_wake_up);
	if (err || load_answers(env, h, argv[2], argv[3], argv[4])) {
		sup_destroy(&h->s);
		free(h);
		return err ? vj_throw_errno(env, "supervisor init", err) : NULL;
	}
	bool open_fast = false;
	if (napi_get_named_property(env, argv[7], "openFast", &v) == napi_ok)
		napi_get_value_bool(env, v, &open_fast);
	h->s.open_fast.enabled = open_fast && native_answers;
	bool track_identity = false;
	if (napi_get_named_property(env, argv[7], "trackIdentity", &v) == napi_ok)
		napi_get_value_bool(env, v, &track_identity);
	h->s.open_fast.ids.on = h->s.open_fast.enabled && track_identity;
	bool spin = false;
	if (napi_get_named_property(env, argv[7], "spin", &v) == napi_ok)
		napi_get_value_bool(env, v, &spin);
	h->s.spin = spin && native_answers;
	bool watch_advice = false;
	if (napi_get_named_property(env, argv[7], "watchAdvice", &v) == napi_ok)
		napi_get_value_bool(env, v, &watch_advice);
	if (watch_advice && (err = aw_init(&h->s.advice))) {
		sup_destroy(&h->s);
		free(h);
		return vj_throw_errno(env, "memfd for the advice watch", err);
	}
	h->env = env;
	h->mode = mode;
	napi_create_reference(env, argv[5], 1, &h->on_notify);
	napi_create_reference(env, argv[6], 1, &h->on_idle);
	napi_value name, resource;
	napi_create_string_utf8(env, "vjail:supervisor", NAPI_AUTO_LENGTH, &name);
	napi_create_object(env, &resource);
	napi_async_init(env, resource, name, &h->async);
	uv_loop_t *loop;
	napi_get_uv_event_loop(env, &loop);
	uv_poll_init(loop, &h->wake_poll, h->s.wake_fd);
	h->wake_poll.data = h;
	h->open_polls = 1;
	uv_poll_start(&h->wake_poll, UV_READABLE, on_wake);
	if (mode != MODE_THREAD && uv_poll_init(loop, &h->listen_poll, h->s.listener) == 0) {
		h->listen_poll.data = h;
		h->listen_poll_ok = 1;
		h->open_polls++;
	}
	if (mode == MODE_LOOP && !h->listen_poll_ok) {
		h->finalized = 1; /* no external owns it: freed once its handles close */
		stop_handle(h);
		napi_throw_error(env, NULL, "the seccomp listener cannot be polled on the Node loop; use mode thread");
		return NULL;
	}
	if (mode == MODE_LOOP)
		receive_on_loop(h);
	else if ((err = sup_start(&h->s))) {
		h->finalized = 1;
		stop_handle(h);
		return vj_throw_errno(env, "pthread_create", err);
	}
	napi_value ext;
	if (napi_create_external(env, h, finalize_handle, NULL, &ext) != napi_ok) {
		h->finalized = 1;
		stop_handle(h);
		napi_throw_error(env, NULL, "internal Node-API error: napi_create_external");
		return NULL;
	}
	return ext;
}

/* supervisorRespond(h, id, value, errno, flags, auditArch, nr, t0): 0 or errno (ENOENT: caller gone). */
napi_value js_supervisor_respond(napi_env env, napi_callback_info info)
{
	napi_value argv[8];
	struct sup_handle *h = handle_args(env, info, 8, argv);
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

napi_value js_supervisor_id_valid(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	struct sup_handle *h = handle_args(env, info, 2, argv);
	if (!h)
		return NULL;
	uint64_t id = vj_u64(env, argv[1]);
	napi_value v;
	napi_get_boolean(env, !h->stopped && ioctl(h->s.listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0, &v);
	return v;
}

/* supervisorAddfd(h, id, srcFd, cloexec): installs srcFd in the caller and answers with its number. */
napi_value js_supervisor_addfd(napi_env env, napi_callback_info info)
{
	napi_value argv[4];
	struct sup_handle *h = handle_args(env, info, 4, argv);
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
napi_value js_supervisor_stats(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	struct sup_handle *h = handle_args(env, info, 1, argv);
	if (!h)
		return NULL;
	size_t len = sizeof(struct sup_stat) * SUP_ARCHES * SUP_MAX_NR;
	void *data;
	napi_value buf;
	if (napi_create_buffer(env, len, &data, &buf) != napi_ok)
		return vj_throw_errno(env, "napi_create_buffer", ENOMEM);
	pthread_mutex_lock(&h->s.stats_mu);
	memcpy(data, h->s.stats, len);
	pthread_mutex_unlock(&h->s.stats_mu);
	return buf;
}

/* supervisorState(h): { receiver: 'thread' | 'loop', switches, toJs, answeredNatively, spinCpuNs, spinWakes }. */
napi_value js_supervisor_state(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	struct sup_handle *h = handle_args(env, info, 1, argv);
	if (!h)
		return NULL;
	napi_value obj, receiver;
	napi_create_object(env, &obj);
	napi_create_string_utf8(env, h->loop_receives ? "loop" : "thread", NAPI_AUTO_LENGTH, &receiver);
	napi_set_named_property(env, obj, "receiver", receiver);
	vj_set_number(env, obj, "switches", h->switches);
	vj_set_number(env, obj, "toJs", (double)h->js_count);
	vj_set_number(env, obj, "answeredNatively", (double)native_count(h));
	vj_set_number(env, obj, "spinCpuNs", (double)ka_cpu_ns(&h->s.awake));
	vj_set_number(env, obj, "spinWakes", (double)atomic_load(&h->s.awake.wakes));
	return obj;
}

napi_value js_supervisor_stop(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	struct sup_handle *h = handle_args(env, info, 1, argv);
	if (!h)
		return NULL;
	stop_handle(h);
	return vj_undefined(env);
}
