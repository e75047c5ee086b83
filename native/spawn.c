/*
 * The jail's launcher started with posix_spawn (clone with CLONE_VM and
 * CLONE_VFORK): libuv forks, and a fork copies the page tables of all of
 * Node's memory, most of spawnJail's time. The child gets exactly the
 * descriptors asked for as 0..n-1, every signal at its default and an empty
 * mask, as libuv gives them.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "napi_util.h"
#include "spawn.h"

#define MAX_FDS 8

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
		posix_spawn_file_actions_t fa;
		posix_spawnattr_t at;
		posix_spawn_file_actions_init(&fa);
		posix_spawnattr_init(&at);
		for (uint32_t i = 0; i < nfds; i++)
			posix_spawn_file_actions_adddup2(&fa, high[i], (int)i);
		if (cwd)
			posix_spawn_file_actions_addchdir_np(&fa, cwd);
		sigset_t all, none;
		sigfillset(&all);
		sigemptyset(&none);
		posix_spawnattr_setsigdefault(&at, &all);
		posix_spawnattr_setsigmask(&at, &none);
		posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
		err = posix_spawn(&pid, file, &fa, &at, args, envp);
		posix_spawn_file_actions_destroy(&fa);
		posix_spawnattr_destroy(&at);
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
	if (err && pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	if (err)
		return vj_throw_errno(env, "posix_spawn", err);
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
