/*
 * The jail's launcher started by clone with CLONE_VM and CLONE_VFORK: libuv
 * forks, and a fork copies the page tables of all of Node's memory, most of
 * spawnJail's time. The child gets exactly the descriptors asked for as
 * 0..n-1, every signal at its default (glibc's posix_spawn would leave its
 * two internal signals ignored, across exec) and an empty mask, as libuv
 * gives them.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "napi_util.h"
#include "spawn.h"
#include "vfork_clone.h"

#define MAX_FDS 64

static char *string_of(napi_env env, napi_value v)
{
	size_t len;
	if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok)
		return NULL;
	char *s = malloc(len + 1);
	if (s)
		napi_get_value_string_utf8(env, v, s, len + 1, &len);
	return s;
}

/* A NULL-terminated copy of an array of strings. */
static char **strings_of(napi_env env, napi_value arr)
{
	uint32_t n = 0;
	if (napi_get_array_length(env, arr, &n) != napi_ok)
		return NULL;
	char **out = calloc(n + 1, sizeof *out);
	for (uint32_t i = 0; out && i < n; i++) {
		napi_value v;
		napi_get_element(env, arr, i, &v);
		out[i] = string_of(env, v);
	}
	return out;
}

static void free_strings(char **s)
{
	for (size_t i = 0; s && s[i]; i++)
		free(s[i]);
	free(s);
}

struct child {
	const char *file;
	char **args, **envp;
	const char *cwd;
	const int *fds;
	uint32_t nfds;
	int err; /* written by the child (shared memory) when exec fails */
};

/* In the child, sharing our memory until it execs: raw system calls only. */
static int child_main(void *arg)
{
	struct child *c = arg;
	struct {
		void *handler;
		unsigned long flags;
		void *restorer;
		uint64_t mask;
	} dfl = { 0 };
	for (int sig = 1; sig <= 64; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			syscall(SYS_rt_sigaction, sig, &dfl, NULL, 8);
	for (uint32_t i = 0; i < c->nfds; i++)
		if (syscall(SYS_dup2, c->fds[i], (int)i) < 0)
			goto fail;
	if (c->cwd && syscall(SYS_chdir, c->cwd) < 0)
		goto fail;
	uint64_t none = 0;
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, 8);
	syscall(SYS_execve, c->file, c->args, c->envp);
fail:
	c->err = errno;
	syscall(SYS_exit, 127);
	return 127;
}

/* Start the child; 0 and its pid, or an errno (the child, if any, reaped). */
static int spawn_child(struct child *c, pid_t *pid)
{
	/* No handler of ours may run in the child before it resets them (vfork_clone blocks them meanwhile). */
	c->err = 0;
	*pid = vfork_clone(child_main, c, 0, 64 * 1024);
	int err = *pid < 0 ? errno : c->err;
	if (*pid > 0 && err)
		while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR)
			;
	return err;
}

/*
 * spawnInheriting(file, argv, envPairs, cwd|null, fds): the child's pid and
 * a pidfd for its exit, {pid, pidfd}; fds[i] becomes the child's fd i.
 */
napi_value js_spawn_inheriting(napi_env env, napi_callback_info info)
{
	napi_value argv[5];
	if (vj_args(env, info, 5, argv))
		return NULL;
	uint32_t nfds = 0;
	napi_get_array_length(env, argv[4], &nfds);
	if (nfds > MAX_FDS)
		return vj_throw_errno(env, "spawnInheriting: fds", EINVAL);
	char *file = string_of(env, argv[0]);
	char **args = strings_of(env, argv[1]);
	char **envp = strings_of(env, argv[2]);
	napi_valuetype cwd_type;
	napi_typeof(env, argv[3], &cwd_type);
	char *cwd = cwd_type == napi_string ? string_of(env, argv[3]) : NULL;
	/* Each source first moved above any target, close-on-exec, so no dup2 clobbers another's source. */
	int high[MAX_FDS];
	uint32_t nhigh = 0;
	int err = 0;
	for (; nhigh < nfds; nhigh++) {
		napi_value v;
		napi_get_element(env, argv[4], nhigh, &v);
		high[nhigh] = fcntl(vj_i32(env, v), F_DUPFD_CLOEXEC, MAX_FDS + 3);
		if (high[nhigh] < 0) {
			err = errno;
			break;
		}
	}
	pid_t pid = -1;
	int pidfd = -1;
	if (!err && file && args && envp) {
		struct child c = { .file = file, .args = args, .envp = envp, .cwd = cwd, .fds = high, .nfds = nfds };
		err = spawn_child(&c, &pid);
		if (!err) {
			pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
			if (pidfd < 0)
				err = errno;
			else
				fcntl(pidfd, F_SETFD, FD_CLOEXEC);
		}
	} else if (!err) {
		err = ENOMEM;
	}
	for (uint32_t i = 0; i < nhigh; i++)
		close(high[i]);
	free(file);
	free(cwd);
	free_strings(args);
	free_strings(envp);
	if (err && pidfd < 0 && pid > 0 && !kill(pid, SIGKILL))
		waitpid(pid, NULL, 0);
	if (err)
		return vj_throw_errno(env, "spawn", err);
	napi_value out;
	napi_create_object(env, &out);
	vj_set_number(env, out, "pid", pid);
	vj_set_number(env, out, "pidfd", pidfd);
	return out;
}

/* reap(pid): {code, signal} once the child has exited (signal: its number, 0 if none), else null. */
napi_value js_reap(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	if (vj_args(env, info, 1, argv))
		return NULL;
	siginfo_t si;
	memset(&si, 0, sizeof si);
	int r;
	do
		r = waitid(P_PID, (id_t)vj_i32(env, argv[0]), &si, WEXITED | WNOHANG);
	while (r < 0 && errno == EINTR);
	napi_value out;
	if (r < 0)
		return vj_throw_errno(env, "waitid", errno);
	if (si.si_pid == 0) {
		napi_get_null(env, &out);
		return out;
	}
	napi_create_object(env, &out);
	int exited = si.si_code == CLD_EXITED;
	vj_set_number(env, out, "code", exited ? si.si_status : -1);
	vj_set_number(env, out, "signal", exited ? 0 : si.si_status);
	return out;
}
