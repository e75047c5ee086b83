/*
 * In-caller execution: run syscalls in the context of a jailed thread that
 * is waiting in a seccomp user notification. docs/IN-CALLER.md explains the
 * design; in short, per session:
 *
 *   SEIZE    PTRACE_SEIZE the caller thread (it keeps waiting; nothing stops).
 *            JavaScript then checks that the notification is still pending,
 *            which proves the seized thread is the caller (not a reused tid).
 *   STOP     PTRACE_INTERRUPT: the notification wait ends with -ERESTARTSYS
 *            and the thread stops in a ptrace trap on its way back to user
 *            space, before it runs any user code. Its registers are saved.
 *   SYSCALL  point rip at the syscall instruction that made the notified
 *            call (ip - 2), load the number and arguments, run it to its
 *            syscall-exit stop and read the result. Repeatable.
 *   FINISH   restore the saved registers with the emulated result in rax
 *            (or a restart code, so the kernel restarts the notified call
 *            or fails it with EINTR), re-queue any signal that arrived in
 *            between, detach.
 *   ABORT    give up: detach leaving the registers as the kernel left them
 *            (the notified call is restarted, giving a new notification).
 *
 * ptrace requests must come from the tracing thread, and an injected call
 * may block for as long as the caller would (futex waits), so every session
 * has its own worker thread. Results reach JavaScript through a thread-safe
 * function that resolves the promise of the pending command.
 */
#include "incaller.h"
#include "caller.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

enum { IC_SEIZE = 1, IC_STOP = 2, IC_SYSCALL = 3, IC_FINISH = 4, IC_ABORT = 5, IC_CLONE = 6 };
#define BASE_OPTIONS (PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL)
#define CLONE_OPTIONS (BASE_OPTIONS | PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK)
enum { FIN_RETURN = 0, FIN_RESTART = 1 };
enum { ARCH_X86_64 = 0, ARCH_I386 = 1 };

#define MAX_DEFERRED 32
#define RED_ZONE 128

struct session {
	/* set at start, read-only after */
	pid_t tid;
	int arch;
	long nr;
	uint64_t ip;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	int have_cmd;
	int op;
	uint64_t a[7];
	int ended; /* the worker has finished (under mu) */

	/* result of the last command: written by the worker before it posts */
	int err;
	uint64_t value;

	napi_threadsafe_function tsfn;

	/* main thread only */
	napi_deferred deferred;
	int running; /* the worker still takes commands */
	int refs;    /* the JS external and the thread-safe function */

	/* worker only */
	uint64_t hold;	 /* signals the emulated call blocks (its sigmask): held back, never delivered during it */
	int eintr_only; /* the emulated call fails with EINTR when interrupted, never restarts (epoll_pwait2) */
	struct user_regs_struct saved;
	int stopped;  /* we hold the caller in a ptrace stop */
	int injected; /* an injected call has started: no clean abort any more */
	int cloning;  /* the injected call is a clone: its child gets the caller's registers back */
	int ndeferred;
	siginfo_t deferred_sig[MAX_DEFERRED];
};

/* ---- worker side --------------------------------------------------------- */

/* Wait for the next stop of the caller. 0 if it is gone (exited, killed). */
static int wait_stop(struct session *s, int *st)
{
	for (;;) {
		pid_t r = waitpid(s->tid, st, __WALL);
		if (r == s->tid)
			return WIFSTOPPED(*st);
		if (r < 0 && errno == EINTR)
			continue;
		return 0;
	}
}

static int is_syscall_stop(int st)
{
	return (st >> 16) == 0 && WSTOPSIG(st) == (SIGTRAP | 0x80);
}

static int is_event_stop(int st)
{
	return (st >> 16) == PTRACE_EVENT_STOP;
}

static uint64_t result_of(const struct session *s, const struct user_regs_struct *r)
{
	if (s->arch == ARCH_I386)
		return (uint64_t)(int64_t)(int32_t)r->rax;
	return r->rax;
}

static void load_call(const struct session *s, struct user_regs_struct *r, uint64_t nr, const uint64_t *a)
{
	r->rip = s->ip - 2;
	r->rax = nr;
	r->orig_rax = (uint64_t)-1; /* not in a syscall: no restart handling on the way out */
	if (s->arch == ARCH_I386) {
		r->rbx = (uint32_t)a[0];
		r->rcx = (uint32_t)a[1];
		r->rdx = (uint32_t)a[2];
		r->rsi = (uint32_t)a[3];
		r->rdi = (uint32_t)a[4];
		r->rbp = (uint32_t)a[5];
	} else {
		r->rdi = a[0];
		r->rsi = a[1];
		r->rdx = a[2];
		r->r10 = a[3];
		r->r8 = a[4];
		r->r9 = a[5];
	}
}

/* Is `sig` one the emulated call's own mask blocks? It stays pending, as the kernel would keep it. */
static int held(const struct session *s, int sig)
{
	return sig > 0 && sig <= 64 && (s->hold >> (sig - 1)) & 1;
}

/* Has the caller a handler for `sig` (/proc/TID/status SigCgt)? */
static int caught(const struct session *s, int sig)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", (int)s->tid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	unsigned long long mask = 0;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "SigCgt: %llx", &mask) == 1)
			break;
	fclose(f);
	return sig > 0 && sig <= 64 && (mask >> (sig - 1)) & 1;
}

/* Keep the siginfo of a held signal, to queue it again when the call ends. */
static void hold_signal(struct session *s)
{
	if (s->ndeferred < MAX_DEFERRED && ptrace(PTRACE_GETSIGINFO, s->tid, 0, &s->deferred_sig[s->ndeferred]) == 0)
		s->ndeferred++;
}

/* Give the caller back with the saved registers, passing `sig` on. */
static void detach_restored(struct session *s, int sig)
{
	if (s->eintr_only && caught(s, sig)) {
		/* A handler runs: the call ends with EINTR, whatever SA_RESTART says, as this one does natively. */
		s->saved.rax = (uint64_t)-EINTR;
		s->saved.orig_rax = (uint64_t)-1;
	}
	ptrace(PTRACE_SETREGS, s->tid, 0, &s->saved);
	ptrace(PTRACE_DETACH, s->tid, 0, (void *)(uintptr_t)sig);
	s->stopped = 0;
}

/*
 * The child of an injected clone, auto-attached and held at its first stop
 * before it ran: give it the argument registers the caller had at the
 * emulated call (the injected clone's arguments took their place), as the
 * emulated call's own child would have them, and let it go. C libraries
 * keep what the child runs in registers the syscall preserves (glibc's
 * clone3 wrapper: the function in rdx, its argument in r8).
 */
static void release_child(struct session *s)
{
	unsigned long msg = 0;
	if (ptrace(PTRACE_GETEVENTMSG, s->tid, 0, &msg))
		return;
	pid_t child = (pid_t)msg;
	int st;
	for (;;) {
		pid_t r = waitpid(child, &st, __WALL);
		if (r == child)
			break;
		if (r < 0 && errno == EINTR)
			continue;
		return;
	}
	struct user_regs_struct r;
	if (WIFSTOPPED(st) && ptrace(PTRACE_GETREGS, child, 0, &r) == 0) {
		r.rdi = s->saved.rdi;
		r.rsi = s->saved.rsi;
		r.rdx = s->saved.rdx;
		r.r10 = s->saved.r10;
		r.r8 = s->saved.r8;
		r.r9 = s->saved.r9;
		r.orig_rax = (uint64_t)-1;
		ptrace(PTRACE_SETREGS, child, 0, &r);
	}
	ptrace(PTRACE_DETACH, child, 0, 0);
}

static int is_child_event(int st)
{
	int ev = st >> 16;
	return ev == PTRACE_EVENT_CLONE || ev == PTRACE_EVENT_FORK || ev == PTRACE_EVENT_VFORK;
}

/*
 * Run one syscall in the stopped caller. Returns 0 with *out set, ESRCH if
 * the caller is gone, EINTR if a signal arrived before any injected call
 * had started (the caller is then detached, restored, with the signal
 * passed on: the kernel restarts the notified call or fails it with EINTR).
 * A signal that arrives later is held back and re-queued by FINISH.
 */
static int inject(struct session *s, uint64_t nr, const uint64_t *a, uint64_t *out)
{
	struct user_regs_struct r = s->saved;
	load_call(s, &r, nr, a);
	if (ptrace(PTRACE_SETREGS, s->tid, 0, &r))
		return ESRCH;
	int st;
	for (;;) {
		if (ptrace(PTRACE_SYSCALL, s->tid, 0, 0) || !wait_stop(s, &st))
			return ESRCH;
		if (is_syscall_stop(st))
			break;
		if (is_event_stop(st))
			continue; /* a group stop: the caller resumes it after we detach */
		int sig = WSTOPSIG(st);
		if (!s->injected && !held(s, sig)) {
			detach_restored(s, sig);
			return EINTR;
		}
		hold_signal(s);
	}
	s->injected = 1;
	/* syscall-entry stop reached; run it to its exit stop */
	do {
		if (ptrace(PTRACE_SYSCALL, s->tid, 0, 0) || !wait_stop(s, &st))
			return ESRCH;
		if (s->cloning && is_child_event(st))
			release_child(s);
	} while (!is_syscall_stop(st));
	if (ptrace(PTRACE_GETREGS, s->tid, 0, &r))
		return ESRCH;
	*out = result_of(s, &r);
	return 0;
}

static int op_stop(struct session *s)
{
	int st;
	if (ptrace(PTRACE_INTERRUPT, s->tid, 0, 0))
		return ESRCH;
	for (;;) {
		if (!wait_stop(s, &st))
			return ESRCH;
		if (is_event_stop(st))
			break;
		if (!is_syscall_stop(st) && held(s, WSTOPSIG(st))) {
			/* A signal the call blocks ended the wait: hold it and take this stop as
			 * ours (the interrupt's own trap comes later and is resumed through). */
			hold_signal(s);
			break;
		}
		if (!is_syscall_stop(st)) {
			/* A real signal ended the wait before our interrupt did. */
			int sig = WSTOPSIG(st);
			if (s->eintr_only && caught(s, sig)) {
				struct user_regs_struct r;
				if (ptrace(PTRACE_GETREGS, s->tid, 0, &r) == 0) {
					r.rax = (uint64_t)-EINTR;
					r.orig_rax = (uint64_t)-1;
					ptrace(PTRACE_SETREGS, s->tid, 0, &r);
				}
			}
			ptrace(PTRACE_DETACH, s->tid, 0, (void *)(uintptr_t)sig);
			return EINTR;
		}
		if (ptrace(PTRACE_CONT, s->tid, 0, 0))
			return ESRCH;
	}
	struct user_regs_struct r;
	if (ptrace(PTRACE_GETREGS, s->tid, 0, &r))
		return ESRCH;
	uint8_t insn[2] = { 0, 0 };
	int same = (s->arch == ARCH_I386 ? (long)(int32_t)r.orig_rax : (long)r.orig_rax) == s->nr && r.rip == s->ip;
	int read_err = caller_read(s->tid, s->ip - 2, insn, 2);
	int is_syscall = insn[0] == 0x0f && insn[1] == 0x05;
	int is_int80 = insn[0] == 0xcd && insn[1] == 0x80;
	int ok_insn = !read_err && (s->arch == ARCH_X86_64 ? is_syscall : is_syscall || is_int80);
	if (!same || !ok_insn) {
		/* Not stopped where the notification said: leave it exactly as it is. */
		ptrace(PTRACE_DETACH, s->tid, 0, 0);
		return EPROTO;
	}
	s->saved = r;
	s->stopped = 1;
	/* From now on a supervisor that dies takes the caller with it: it would
	 * otherwise resume with registers prepared for an injected call. */
	ptrace(PTRACE_SETOPTIONS, s->tid, 0, (void *)(uintptr_t)BASE_OPTIONS);
	s->value = r.rsp;
	return 0;
}

/* Queue the held-back signals again, in the caller itself, with their siginfo. */
static void requeue_deferred(struct session *s)
{
	if (s->ndeferred == 0)
		return;
	int i386 = s->arch == ARCH_I386;
	uint64_t none[6] = { 0 }, pid = 0, tid = 0, r;
	/* pid and tid as the caller sees them (it may be in another PID namespace) */
	if (inject(s, i386 ? 20 : SYS_getpid, none, &pid) || inject(s, i386 ? 224 : SYS_gettid, none, &tid))
		return;
	uint64_t at = (s->saved.rsp - RED_ZONE - sizeof(siginfo_t)) & ~(uint64_t)15;
	for (int i = 0; i < s->ndeferred; i++) {
		if (caller_write(s->tid, at, &s->deferred_sig[i], sizeof(siginfo_t)))
			break;
		uint64_t a[6] = { pid, tid, (uint64_t)s->deferred_sig[i].si_signo, at, 0, 0 };
		if (inject(s, i386 ? 335 : SYS_rt_tgsigqueueinfo, a, &r))
			break;
	}
	s->ndeferred = 0;
}

/*
 * Detach from a seized caller that is not stopped. Only used once its
 * notification is gone, i.e. a signal (or death) ended the wait: the thread
 * is then on its way to a signal-delivery stop, where it waits for us, so it
 * cannot start another notified call (and another session cannot fail to
 * seize it) before this returns.
 */
static void detach_running(struct session *s)
{
	int st;
	if (ptrace(PTRACE_INTERRUPT, s->tid, 0, 0))
		return;
	while (wait_stop(s, &st)) {
		if (is_syscall_stop(st)) {
			if (ptrace(PTRACE_CONT, s->tid, 0, 0))
				return;
			continue;
		}
		/* An event stop leaves a pending signal queued; a signal stop passes it on. */
		ptrace(PTRACE_DETACH, s->tid, 0, (void *)(uintptr_t)(is_event_stop(st) ? 0 : WSTOPSIG(st)));
		return;
	}
}

static int op_finish(struct session *s, int mode, uint64_t value)
{
	if (!s->stopped)
		return ESRCH;
	requeue_deferred(s);
	struct user_regs_struct r = s->saved;
	r.rax = value;
	if (mode == FIN_RETURN)
		r.orig_rax = (uint64_t)-1;
	/* FIN_RESTART keeps orig_rax = the notified call: the kernel's signal
	 * code restarts that call or turns the code into EINTR. */
	int err = ptrace(PTRACE_SETREGS, s->tid, 0, &r) ? ESRCH : 0;
	ptrace(PTRACE_DETACH, s->tid, 0, 0);
	s->stopped = 0;
	return err;
}

static void *worker(void *p)
{
	struct session *s = p;
	for (int end = 0; !end;) {
		pthread_mutex_lock(&s->mu);
		while (!s->have_cmd)
			pthread_cond_wait(&s->cv, &s->mu);
		int op = s->op;
		uint64_t a[7];
		memcpy(a, s->a, sizeof a);
		s->have_cmd = 0;
		pthread_mutex_unlock(&s->mu);

		int err = 0;
		uint64_t value = 0;
		switch (op) {
		case IC_SEIZE:
			s->hold = a[0];
			s->eintr_only = a[1] != 0;
			if (ptrace(PTRACE_SEIZE, s->tid, 0, (void *)(uintptr_t)PTRACE_O_TRACESYSGOOD))
				err = errno;
			end = err != 0;
			break;
		case IC_STOP:
			err = op_stop(s);
			value = s->value;
			end = err != 0;
			break;
		case IC_SYSCALL:
			err = s->stopped ? inject(s, a[0], &a[1], &value) : ESRCH;
			end = err != 0;
			break;
		case IC_CLONE:
			/* clone(a[0..4]) in the caller, its child given the caller's registers (release_child) */
			if (!s->stopped || ptrace(PTRACE_SETOPTIONS, s->tid, 0, (void *)(uintptr_t)CLONE_OPTIONS)) {
				err = ESRCH;
			} else {
				s->cloning = 1;
				err = inject(s, s->arch == ARCH_I386 ? 120 : SYS_clone, a, &value);
				s->cloning = 0;
				if (!err)
					ptrace(PTRACE_SETOPTIONS, s->tid, 0, (void *)(uintptr_t)BASE_OPTIONS);
			}
			end = err != 0;
			break;
		case IC_FINISH:
			err = op_finish(s, (int)a[0], a[1]);
			end = 1;
			break;
		default: /* IC_ABORT */
			if (s->stopped)
				detach_restored(s, 0);
			else
				detach_running(s);
			end = 1;
			break;
		}
		s->err = err;
		s->value = value;
		if (end) {
			pthread_mutex_lock(&s->mu);
			s->ended = 1;
			pthread_mutex_unlock(&s->mu);
		}
		napi_call_threadsafe_function(s->tsfn, NULL, napi_tsfn_blocking);
	}
	napi_release_threadsafe_function(s->tsfn, napi_tsfn_release);
	return NULL;
}

/* ---- main-thread side ---------------------------------------------------- */

static void unref(struct session *s)
{
	if (--s->refs > 0)
		return;
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
}

static void post(struct session *s, int op, const uint64_t *a)
{
	pthread_mutex_lock(&s->mu);
	s->op = op;
	memcpy(s->a, a, sizeof s->a);
	s->have_cmd = 1;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void settle(napi_env env, napi_deferred d, int err, uint64_t value)
{
	napi_value obj, v;
	napi_create_object(env, &obj);
	napi_create_int32(env, err, &v);
	napi_set_named_property(env, obj, "err", v);
	napi_create_bigint_uint64(env, value, &v);
	napi_set_named_property(env, obj, "value", v);
	napi_resolve_deferred(env, d, obj);
}

static void on_result(napi_env env, napi_value js_cb, void *context, void *data)
{
	(void)js_cb;
	(void)data;
	struct session *s = context;
	pthread_mutex_lock(&s->mu);
	if (s->ended)
		s->running = 0;
	pthread_mutex_unlock(&s->mu);
	napi_deferred d = s->deferred;
	s->deferred = NULL;
	if (env && d)
		settle(env, d, s->err, s->value);
}

static void on_tsfn_finalized(napi_env env, void *data, void *hint)
{
	(void)env;
	(void)hint;
	unref(data);
}

static void on_external_finalized(napi_env env, void *data, void *hint)
{
	(void)env;
	(void)hint;
	struct session *s = data;
	if (s->running && !s->deferred) {
		/* Dropped without FINISH: give the caller back (restart) and end the worker. */
		uint64_t none[7] = { 0 };
		s->running = 0;
		post(s, IC_ABORT, none);
	}
	unref(s);
}

static uint64_t to_u64(napi_env env, napi_value v)
{
	napi_valuetype t;
	if (napi_typeof(env, v, &t) != napi_ok)
		return 0;
	if (t == napi_bigint) {
		uint64_t x = 0;
		bool lossless;
		napi_get_value_bigint_uint64(env, v, &x, &lossless);
		return x;
	}
	if (t == napi_number) {
		int64_t i = 0;
		napi_get_value_int64(env, v, &i);
		return (uint64_t)i;
	}
	return 0;
}

napi_value incaller_js_start(napi_env env, napi_callback_info info)
{
	size_t argc = 4;
	napi_value argv[4];
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4) {
		napi_throw_type_error(env, NULL, "incallerStart(tid, arch, nr, ip)");
		return NULL;
	}
	struct session *s = calloc(1, sizeof *s);
	if (!s) {
		napi_throw_error(env, "ENOMEM", "incallerStart: out of memory");
		return NULL;
	}
	s->tid = (pid_t)to_u64(env, argv[0]);
	s->arch = (int)to_u64(env, argv[1]);
	s->nr = (long)(int64_t)to_u64(env, argv[2]);
	s->ip = to_u64(env, argv[3]);
	s->running = 1;
	s->refs = 2;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	napi_value name;
	napi_create_string_utf8(env, "vjail:incaller", NAPI_AUTO_LENGTH, &name);
	if (napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, s, on_tsfn_finalized, s, on_result,
					    &s->tsfn) != napi_ok) {
		s->refs = 1;
		unref(s);
		napi_throw_error(env, NULL, "incallerStart: cannot create a thread-safe function");
		return NULL;
	}
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	pthread_t t;
	int err = pthread_create(&t, &attr, worker, s);
	pthread_attr_destroy(&attr);
	if (err) {
		s->running = 0;
		napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort); /* finalizer drops one ref */
		unref(s);
		napi_throw_error(env, NULL, "incallerStart: cannot start a thread");
		return NULL;
	}
	napi_value ext;
	napi_create_external(env, s, on_external_finalized, NULL, &ext);
	return ext;
}

napi_value incaller_js_command(napi_env env, napi_callback_info info)
{
	size_t argc = 9;
	napi_value argv[9];
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) {
		napi_throw_type_error(env, NULL, "incallerCommand(session, op, ...args)");
		return NULL;
	}
	void *p = NULL;
	if (napi_get_value_external(env, argv[0], &p) != napi_ok || !p) {
		napi_throw_type_error(env, NULL, "not an in-caller session");
		return NULL;
	}
	struct session *s = p;
	if (s->deferred) {
		napi_throw_error(env, NULL, "in-caller session: a command is still running");
		return NULL;
	}
	int op = (int)to_u64(env, argv[1]);
	uint64_t a[7] = { 0 };
	for (size_t i = 2; i < argc && i < 9; i++)
		a[i - 2] = to_u64(env, argv[i]);
	napi_deferred d;
	napi_value promise;
	if (napi_create_promise(env, &d, &promise) != napi_ok)
		return NULL;
	if (!s->running || op < IC_SEIZE || op > IC_CLONE) {
		settle(env, d, s->running ? EINVAL : ESRCH, 0);
		return promise;
	}
	s->deferred = d;
	post(s, op, a);
	return promise;
}
