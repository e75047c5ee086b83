/*
 * ptrace primitives for checkpoint and restore. Each function is one ptrace
 * request (or one wait); the sequencing (seize, interrupt, inject a syscall,
 * read the register sets) lives in src/checkpoint/tracee.ts. Errors are
 * thrown like the rest of the addon: Error objects with errno/code/syscall.
 */

#include <elf.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <linux/kcmp.h>
#include <linux/ptrace.h>

#include "napi_util.h"
#include "ptrace.h"

#ifndef PTRACE_GET_RSEQ_CONFIGURATION
#define PTRACE_GET_RSEQ_CONFIGURATION 0x420f
#endif

/* The largest register set we read: XSAVE areas are a few KiB (AMX: ~11 KiB). */
#define REGSET_MAX (64 * 1024)

static napi_value copy_buffer(napi_env env, const void *src, size_t len)
{
	void *data;
	napi_value buf;
	if (napi_create_buffer_copy(env, len, src, &data, &buf) != napi_ok)
		return NULL;
	return buf;
}

/*
 * Each ptrace stop of a tracee raises SIGCHLD in its tracer unless the
 * tracer's SIGCHLD action has SA_NOCLDSTOP. vjail needs none of those: it
 * waits for its tracees' stops with waitpid, and Node's handler (libuv's)
 * only looks for exits. Yet each costs the thread that takes it a handler
 * run and, while vjail-guard traces vjail, a signal-delivery stop and a
 * round trip through the guard: half of an injected call's time (a
 * checkpoint's 62 rt_sigaction calls: 9-14 ms, 5 ms with the flag). The
 * flag is set again before each resume: libuv installs its handler, or puts
 * back SIG_DFL, without it whenever Node starts its first child process or
 * reaps its last. Exits still raise SIGCHLD.
 */
static void quiet_child_stops(void)
{
	struct sigaction sa;
	if (sigaction(SIGCHLD, NULL, &sa) == 0 && !(sa.sa_flags & SA_NOCLDSTOP) && sa.sa_handler != SIG_IGN) {
		sa.sa_flags |= SA_NOCLDSTOP;
		sigaction(SIGCHLD, &sa, NULL);
	}
}

/* A request taking (pid, options) with no address, such as PTRACE_SEIZE. */
static napi_value pid_options_request(napi_env env, napi_callback_info info, enum __ptrace_request req, const char *name)
{
	napi_value argv[2];
	if (vj_args(env, info, 2, argv))
		return NULL;
	if (ptrace(req, vj_i32(env, argv[0]), 0L, (long)vj_i32(env, argv[1])))
		return vj_throw_errno(env, name, errno);
	return vj_undefined(env);
}

/* ptraceSeize(pid, options) */
napi_value js_ptrace_seize(napi_env env, napi_callback_info info)
{
	quiet_child_stops();
	return pid_options_request(env, info, PTRACE_SEIZE, "ptrace(PTRACE_SEIZE)");
}

/* ptraceInterrupt(pid) */
napi_value js_ptrace_interrupt(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	if (vj_args(env, info, 1, argv))
		return NULL;
	if (ptrace(PTRACE_INTERRUPT, vj_i32(env, argv[0]), 0L, 0L))
		return vj_throw_errno(env, "ptrace(PTRACE_INTERRUPT)", errno);
	return vj_undefined(env);
}

/*
 * ptraceWait(pid, nohang, spinUs): the raw wait status, or null if nohang
 * and nothing happened within spinUs microseconds. Meanwhile the CPU is
 * yielded (sched_yield): on a busy machine the tracee usually needs it to
 * reach its stop, and handing it over costs less than a turn of the event
 * loop that would keep polling.
 */
napi_value js_ptrace_wait(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	if (vj_args(env, info, 3, argv))
		return NULL;
	bool nohang = false;
	napi_get_value_bool(env, argv[1], &nohang);
	int64_t spin_ns = (int64_t)vj_i32(env, argv[2]) * 1000;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int st = 0;
	pid_t r;
	for (;;) {
		do
			r = waitpid(vj_i32(env, argv[0]), &st, __WALL | (nohang ? WNOHANG : 0));
		while (r < 0 && errno == EINTR);
		if (r != 0 || spin_ns <= 0)
			break;
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((int64_t)(now.tv_sec - t0.tv_sec) * 1000000000 + (now.tv_nsec - t0.tv_nsec) >= spin_ns)
			break;
		sched_yield();
	}
	if (r < 0)
		return vj_throw_errno(env, "waitpid", errno);
	napi_value v;
	if (r == 0)
		napi_get_null(env, &v);
	else
		napi_create_int32(env, st, &v);
	return v;
}

/* ptraceResume(pid, how, signal): how is 0 = CONT, 1 = SYSCALL, 2 = DETACH, 3 = LISTEN, 4 = SINGLESTEP. */
napi_value js_ptrace_resume(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	if (vj_args(env, info, 3, argv))
		return NULL;
	static const struct {
		enum __ptrace_request req;
		const char *name;
	} hows[] = {
		{ PTRACE_CONT, "ptrace(PTRACE_CONT)" },
		{ PTRACE_SYSCALL, "ptrace(PTRACE_SYSCALL)" },
		{ PTRACE_DETACH, "ptrace(PTRACE_DETACH)" },
		{ PTRACE_LISTEN, "ptrace(PTRACE_LISTEN)" },
		{ PTRACE_SINGLESTEP, "ptrace(PTRACE_SINGLESTEP)" },
	};
	int how = vj_i32(env, argv[1]);
	if (how < 0 || how >= (int)(sizeof hows / sizeof hows[0])) {
		napi_throw_range_error(env, NULL, "bad resume request");
		return NULL;
	}
	quiet_child_stops();
	if (ptrace(hows[how].req, vj_i32(env, argv[0]), 0L, (long)vj_i32(env, argv[2])))
		return vj_throw_errno(env, hows[how].name, errno);
	return vj_undefined(env);
}

/* ptraceGetRegset(pid, type): the register set (NT_PRSTATUS, NT_X86_XSTATE, ...) as a Buffer. */
napi_value js_ptrace_get_regset(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	if (vj_args(env, info, 2, argv))
		return NULL;
	void *buf = calloc(1, REGSET_MAX);
	if (!buf)
		return vj_throw_errno(env, "calloc", ENOMEM);
	struct iovec iov = { .iov_base = buf, .iov_len = REGSET_MAX };
	napi_value out = NULL;
	if (ptrace(PTRACE_GETREGSET, vj_i32(env, argv[0]), (long)vj_i32(env, argv[1]), &iov))
		vj_throw_errno(env, "ptrace(PTRACE_GETREGSET)", errno);
	else
		out = copy_buffer(env, buf, iov.iov_len);
	free(buf);
	return out;
}

/* ptraceSetRegset(pid, type, buffer) */
napi_value js_ptrace_set_regset(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	if (vj_args(env, info, 3, argv))
		return NULL;
	void *data;
	size_t len;
	if (vj_buffer(env, argv[2], "the register set", &data, &len))
		return NULL;
	struct iovec iov = { .iov_base = data, .iov_len = len };
	if (ptrace(PTRACE_SETREGSET, vj_i32(env, argv[0]), (long)vj_i32(env, argv[1]), &iov))
		return vj_throw_errno(env, "ptrace(PTRACE_SETREGSET)", errno);
	if (iov.iov_len != len)
		return vj_throw_errno(env, "ptrace(PTRACE_SETREGSET) (short)", EINVAL);
	return vj_undefined(env);
}

/* ptraceGetSigmask(pid): the blocked-signal mask as a bigint. */
napi_value js_ptrace_get_sigmask(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	if (vj_args(env, info, 1, argv))
		return NULL;
	uint64_t mask = 0;
	if (ptrace(PTRACE_GETSIGMASK, vj_i32(env, argv[0]), (long)sizeof mask, &mask))
		return vj_throw_errno(env, "ptrace(PTRACE_GETSIGMASK)", errno);
	napi_value v;
	napi_create_bigint_uint64(env, mask, &v);
	return v;
}

/* ptraceSetSigmask(pid, mask) */
napi_value js_ptrace_set_sigmask(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	if (vj_args(env, info, 2, argv))
		return NULL;
	uint64_t mask = vj_u64(env, argv[1]);
	if (ptrace(PTRACE_SETSIGMASK, vj_i32(env, argv[0]), (long)sizeof mask, &mask))
		return vj_throw_errno(env, "ptrace(PTRACE_SETSIGMASK)", errno);
	return vj_undefined(env);
}

/* ptraceRseqConfig(pid): struct ptrace_rseq_configuration (Linux 5.13+) as a Buffer. */
napi_value js_ptrace_rseq_config(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	if (vj_args(env, info, 1, argv))
		return NULL;
	struct {
		uint64_t rseq_abi_pointer;
		uint32_t rseq_abi_size;
		uint32_t signature;
		uint32_t flags;
		uint32_t pad;
	} conf;
	memset(&conf, 0, sizeof conf);
	long n = ptrace(PTRACE_GET_RSEQ_CONFIGURATION, vj_i32(env, argv[0]), (long)sizeof conf, &conf);
	if (n < 0)
		return vj_throw_errno(env, "ptrace(PTRACE_GET_RSEQ_CONFIGURATION)", errno);
	return copy_buffer(env, &conf, sizeof conf);
}

/* ptracePeekSiginfo(pid, shared): every queued siginfo (128 bytes each) of the
 * thread's private queue, or of the process's shared queue. */
napi_value js_ptrace_peek_siginfo(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	if (vj_args(env, info, 2, argv))
		return NULL;
	bool shared = false;
	napi_get_value_bool(env, argv[1], &shared);
	enum { BATCH = 32, MAX = 4096 };
	siginfo_t *all = calloc(MAX, sizeof(siginfo_t));
	if (!all)
		return vj_throw_errno(env, "calloc", ENOMEM);
	size_t n = 0;
	while (n < MAX) {
		struct ptrace_peeksiginfo_args a = { .off = n, .flags = shared ? PTRACE_PEEKSIGINFO_SHARED : 0, .nr = BATCH };
		long got = ptrace(PTRACE_PEEKSIGINFO, vj_i32(env, argv[0]), &a, &all[n]);
		if (got < 0) {
			int err = errno;
			free(all);
			return vj_throw_errno(env, "ptrace(PTRACE_PEEKSIGINFO)", err);
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	napi_value out = copy_buffer(env, all, n * sizeof(siginfo_t));
	free(all);
	return out;
}

/* ptraceSetOptions(pid, options): PTRACE_SETOPTIONS, e.g. to follow forks and clones. */
napi_value js_ptrace_set_options(napi_env env, napi_callback_info info)
{
	return pid_options_request(env, info, PTRACE_SETOPTIONS, "ptrace(PTRACE_SETOPTIONS)");
}

/* ptraceGetEventMsg(pid): PTRACE_GETEVENTMSG (the new task's pid at a fork or clone stop). */
napi_value js_ptrace_get_event_msg(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	if (vj_args(env, info, 1, argv))
		return NULL;
	unsigned long msg = 0;
	if (ptrace(PTRACE_GETEVENTMSG, vj_i32(env, argv[0]), 0L, &msg))
		return vj_throw_errno(env, "ptrace(PTRACE_GETEVENTMSG)", errno);
	napi_value v;
	napi_create_double(env, (double)msg, &v);
	return v;
}

/* kcmp(KCMP_FILE) of the arguments (pid1, fd1, pid2, fd2): its answer, or -1 with an exception thrown. */
static long kcmp_file_args(napi_env env, napi_callback_info info)
{
	napi_value argv[4];
	if (vj_args(env, info, 4, argv))
		return -1;
	long r = syscall(SYS_kcmp, vj_i32(env, argv[0]), vj_i32(env, argv[2]), KCMP_FILE, (unsigned long)vj_i32(env, argv[1]),
			 (unsigned long)vj_i32(env, argv[3]));
	if (r < 0)
		vj_throw_errno(env, "kcmp(KCMP_FILE)", errno);
	return r;
}

/*
 * kcmpFile(pid1, fd1, pid2, fd2): do the two descriptors refer to one open
 * file description (kcmp KCMP_FILE)? Descriptions shared by fork or dup look
 * alike in /proc; only the kernel can tell them from two opens of one file.
 */
napi_value js_kcmp_file(napi_env env, napi_callback_info info)
{
	long r = kcmp_file_args(env, info);
	if (r < 0)
		return NULL;
	napi_value v;
	napi_get_boolean(env, r == 0, &v);
	return v;
}

/*
 * kcmpFileOrder(pid1, fd1, pid2, fd2): kcmp(KCMP_FILE) as the kernel answers
 * it: 0 the same open file description, 1 the first orders before the
 * second, 2 after it, 3 different but unordered. The order is of obfuscated
 * kernel pointers, consistent while both exist: enough to sort descriptions.
 */
napi_value js_kcmp_file_order(napi_env env, napi_callback_info info)
{
	long r = kcmp_file_args(env, info);
	return r < 0 ? NULL : vj_make_i32(env, (int32_t)r);
}

/* ---- one syscall run many times in a stopped thread ---------------------- */

enum batch_stop { BATCH_DONE, BATCH_SIGNAL, BATCH_EXITED, BATCH_TIMEOUT, BATCH_UNEXPECTED };

static int64_t mono_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* The thread's next stop within timeout_ms: 1 and *st, 0 on time-out, -errno. The CPU is handed
 * over (sched_yield) while waiting: the tracee usually needs it to reach the stop. */
static int wait_stop(pid_t pid, int *st, int64_t timeout_ms)
{
	int64_t until = mono_ms() + timeout_ms;
	for (unsigned spins = 0;; spins++) {
		pid_t r = waitpid(pid, st, __WALL | WNOHANG);
		if (r == pid)
			return 1;
		if (r < 0 && errno != EINTR)
			return -errno;
		if ((spins & 255) == 255 && mono_ms() > until)
			return 0;
		sched_yield();
	}
}

#define IS_STOP(st) (((st) & 0xff) == 0x7f)
#define STOP_SIG(st) (((st) >> 8) & 0xff)
#define STOP_EVENT(st) ((st) >> 16)

/* Resume with PTRACE_SYSCALL and wait for the next syscall stop, going on over event stops (a group
 * stop shows again once the thread is let go). */
static enum batch_stop to_syscall_stop(pid_t pid, int *st, int64_t timeout_ms, int entry)
{
	for (;;) {
		if (ptrace(PTRACE_SYSCALL, pid, 0L, 0L))
			return BATCH_UNEXPECTED;
		int got = wait_stop(pid, st, timeout_ms);
		if (got == 0)
			return BATCH_TIMEOUT;
		if (got < 0)
			return BATCH_UNEXPECTED;
		if (!IS_STOP(*st))
			return BATCH_EXITED;
		if (STOP_SIG(*st) == (SIGTRAP | 0x80))
			return BATCH_DONE;
		if (STOP_EVENT(*st) == PTRACE_EVENT_STOP)
			continue;
		/* A signal before the call entered: the tracer delivers it (src/checkpoint/tracee.ts). */
		if (entry && STOP_EVENT(*st) == 0)
			return BATCH_SIGNAL;
		return BATCH_UNEXPECTED;
	}
}

/*
 * ptraceSyscallBatch(pid, regs, args, timeoutMs): run one syscall in the
 * stopped thread once per six arguments of `args` (u64 each), each from
 * `regs` (NT_PRSTATUS: rax the call, orig_rax -1, rip a syscall
 * instruction) with the arguments loaded, as Tracee.syscall runs one, the
 * stops waited for here instead of in JavaScript. A call the kernel wants
 * restarted is run again. Returns { done, results (i64 each), stop: 0 all
 * done | 1 a signal came before call `done` entered (a delivery stop, the
 * call not run) | 2 the thread ended | 3 time-out | 4 another stop or
 * error, status }; the thread's registers are left as the last stop has them.
 */
napi_value js_ptrace_syscall_batch(napi_env env, napi_callback_info info)
{
	napi_value argv[4];
	if (vj_args(env, info, 4, argv))
		return NULL;
	pid_t pid = vj_i32(env, argv[0]);
	void *tdata, *adata;
	size_t tlen, alen;
	if (vj_buffer(env, argv[1], "the registers", &tdata, &tlen) || vj_buffer(env, argv[2], "the arguments", &adata, &alen))
		return NULL;
	if (tlen != sizeof(struct user_regs_struct) || alen % 48) {
		napi_throw_range_error(env, NULL, "registers must be one user_regs_struct and arguments six u64 per call");
		return NULL;
	}
	int64_t timeout_ms = vj_i32(env, argv[3]);
	size_t n = alen / 48;
	int64_t *results = calloc(n ? n : 1, sizeof *results);
	if (!results)
		return vj_throw_errno(env, "calloc", ENOMEM);
	const uint64_t *a = adata;
	struct user_regs_struct regs;
	struct iovec iov = { .iov_base = &regs, .iov_len = sizeof regs };
	enum batch_stop stop = BATCH_DONE;
	int st = 0;
	size_t done = 0;
	quiet_child_stops();
	for (unsigned restarts = 0; done < n && stop == BATCH_DONE;) {
		memcpy(&regs, tdata, sizeof regs);
		const uint64_t *x = a + done * 6;
		regs.rdi = x[0];
		regs.rsi = x[1];
		regs.rdx = x[2];
		regs.r10 = x[3];
		regs.r8 = x[4];
		regs.r9 = x[5];
		iov.iov_len = sizeof regs;
		if (ptrace(PTRACE_SETREGSET, pid, (void *)NT_PRSTATUS, &iov)) {
			stop = BATCH_UNEXPECTED;
			break;
		}
		if ((stop = to_syscall_stop(pid, &st, timeout_ms, 1)) != BATCH_DONE)
			break;
		if ((stop = to_syscall_stop(pid, &st, timeout_ms, 0)) != BATCH_DONE)
			break;
		iov.iov_len = sizeof regs;
		if (ptrace(PTRACE_GETREGSET, pid, (void *)NT_PRSTATUS, &iov)) {
			stop = BATCH_UNEXPECTED;
			break;
		}
		int64_t r = (int64_t)regs.rax;
		/* ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK: run it again. */
		if ((r == -512 || r == -513 || r == -514 || r == -516) && ++restarts < 1000)
			continue;
		results[done++] = r;
		restarts = 0;
	}
	napi_value out, buf;
	napi_create_object(env, &out);
	vj_set_number(env, out, "done", (double)done);
	vj_set_number(env, out, "stop", (double)stop);
	vj_set_number(env, out, "status", (double)st);
	buf = copy_buffer(env, results, n * sizeof *results);
	free(results);
	if (!buf)
		return NULL;
	napi_set_named_property(env, out, "results", buf);
	return out;
}
