/*
 * The Node-API addon: the few things JavaScript cannot do. It exposes small,
 * typed functions; all policy stays in TypeScript. Errors are thrown as Error
 * objects carrying `errno`, `code` and `syscall`, like Node's own.
 */

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/seccomp.h>
#include <node_api.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "caller.h"
#include "chunkhash.h"
#include "cpu.h"
#include "napi_util.h"
#include "pagecopy.h"
#include "predump.h"
#include "lazypages.h"
#include "ipcns.h"
#include "incaller.h"
#include "fdio.h"
#include "fdrecv.h"
#include "sockdiag.h"
#include "features.h"
#include "guard_napi.h"
#include "shimcalls.h"
#include "protocol.h"
#include "ptrace.h"
#include "resident.h"
#include "spawn.h"
#include "supervisor.h"
#include "supervisor_napi.h"

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

/* peerPid(fd): the PID (in our namespace) of the process that connected a unix socket (SO_PEERCRED). */
static napi_value js_peer_pid(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	if (vj_args(env, info, 1, argv))
		return NULL;
	struct ucred cred;
	socklen_t len = sizeof cred;
	if (getsockopt(vj_i32(env, argv[0]), SOL_SOCKET, SO_PEERCRED, &cred, &len))
		return vj_throw_errno(env, "getsockopt(SO_PEERCRED)", errno);
	return vj_make_i32(env, cred.pid);
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
	int passed;
	ssize_t n = vj_recv_with_fd(fd, &m, sizeof m, &passed);
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

/* flock(fd, LOCK_EX | LOCK_NB): true when taken, false when another open file
 * description holds it; the kernel lets go of it when the holder dies. */
static napi_value js_try_lock_exclusive(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	if (vj_args(env, info, 1, argv))
		return NULL;
	int r;
	do
		r = flock(vj_i32(env, argv[0]), LOCK_EX | LOCK_NB);
	while (r < 0 && errno == EINTR);
	if (r < 0 && errno != EWOULDBLOCK)
		return vj_throw_errno(env, "flock", errno);
	napi_value out;
	napi_get_boolean(env, r == 0, &out);
	return out;
}

/* punchHole(fd, offset, len): free the file's storage in [offset, offset+len)
 * without changing its size (a bounded log drops its head this way: appends
 * go on at the end untouched, so nothing written meanwhile is lost). */
static napi_value js_punch_hole(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	if (vj_args(env, info, 3, argv))
		return NULL;
	int r;
	do
		r = fallocate(vj_i32(env, argv[0]), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)vj_u64(env, argv[1]),
			      (off_t)vj_u64(env, argv[2]));
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return vj_throw_errno(env, "fallocate", errno);
	return NULL;
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
		{ "peerPid", js_peer_pid },
		{ "recvCtl", js_recv_ctl },
		{ "pidfdGetfd", js_pidfd_getfd },
		{ "pidfdSendSignal", js_pidfd_send_signal },
		{ "readMem", js_read_mem },
		{ "writeMem", js_write_mem },
		{ "readString", js_read_string },
		{ "probeSyscalls", js_probe_syscalls },
		{ "punchHole", js_punch_hole },
		{ "supervisorStart", js_supervisor_start },
		{ "supervisorRespond", js_supervisor_respond },
		{ "supervisorIdValid", js_supervisor_id_valid },
		{ "supervisorAddfd", js_supervisor_addfd },
		{ "supervisorStats", js_supervisor_stats },
		{ "supervisorState", js_supervisor_state },
		{ "supervisorStop", js_supervisor_stop },
		{ "incallerStart", incaller_js_start },
		{ "incallerCommand", incaller_js_command },
		{ "memfdSealed", js_memfd_sealed },
		{ "lazyStart", js_lazy_start },
		{ "lazyPrefetch", js_lazy_prefetch },
		{ "lazyStop", js_lazy_stop },
		{ "shimMemfdCreate", js_shim_memfd_create },
		{ "shimPidfdOpen", js_shim_pidfd_open },
		{ "shimIdentityEnter", js_shim_identity_enter },
		{ "shimIdentityLeave", js_shim_identity_leave },
		{ "shimInodeFlags", js_shim_inode_flags },
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
		{ "ptraceSyscallBatch", js_ptrace_syscall_batch },
		{ "kcmpFile", js_kcmp_file },
		{ "kcmpFileOrder", js_kcmp_file_order },
		{ "guardTableFd", js_guard_table_fd },
		{ "guardCgroup", js_guard_cgroup },
		{ "guardTask", js_guard_task },
		{ "guardSignal", js_guard_signal },
		{ "cpuXstate", js_cpu_xstate },
		{ "pageRead", js_page_read },
		{ "pageWrite", js_page_write },
		{ "syncFileRange", js_sync_file_range },
		{ "pwriteAll", js_pwrite_all },
		{ "preadAll", js_pread_all },
		{ "uffdApi", js_uffd_api },
		{ "uffdRange", js_uffd_range },
		{ "pagemapScan", js_pagemap_scan },
		{ "sys", js_sys },
		{ "pipePeek", js_pipe_peek },
		{ "probeFds", js_probe_fds },
		{ "sha256Chunks", js_sha256_chunks },
		{ "sha256FileChunks", js_sha256_file_chunks },
		{ "outsideLinks", js_outside_links },
		{ "sendFd", js_send_fd },
		{ "tryLockExclusive", js_try_lock_exclusive },
		{ "ipcNsCalls", js_ipc_ns_calls },
		{ "unixDiag", js_unix_diag },
		{ "sockPeek", js_sock_peek },
		{ "spawnInheriting", js_spawn_inheriting },
		{ "reap", js_reap },
		{ "residentListen", js_resident_listen },
		{ "residentAccept", js_resident_accept },
		{ "residentRecv", js_resident_recv },
		{ "fdWatch", js_resident_watch },
		{ "fdUnwatch", js_resident_unwatch },
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
