/*
 * System V IPC objects of a jail live in the jail's own IPC namespace; the
 * calls that see them (shmget, shmat, semctl, msgrcv, and opening
 * the files of /proc/sysvipc and /proc/sys/kernel/..._next_id) act on the caller's
 * namespace. ipcNsCalls runs a list of raw system calls on a short-lived
 * thread that has joined that namespace (setns changes only the calling
 * thread's), so Node's own threads never leave ours. Descriptors and
 * attached segments it makes belong to the whole process, as always.
 *
 * A jail with a user namespace of its own (started without root) has its
 * IPC namespace owned by that one: joining it needs CAP_SYS_ADMIN there,
 * which its owner gets only by joining the user namespace first, and a
 * thread of a multi-threaded process cannot. The calls then run in a
 * process that shares our memory and descriptors but not our thread group
 * (clone with CLONE_VM | CLONE_FILES | CLONE_VFORK), which can.
 */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ipcns.h"
#include "napi_util.h"
#include "vfork_clone.h"

#define MAX_CALLS 64

struct ns_calls {
	int nsfd;
	int usernsfd; /* -1: the jail's user namespace is ours */
	int ncalls;
	long nr[MAX_CALLS];
	long args[MAX_CALLS][6];
	long result[MAX_CALLS];
	int setns_errno;
};

static void *run_calls(void *p)
{
	struct ns_calls *c = p;
	if (c->usernsfd >= 0 && setns(c->usernsfd, CLONE_NEWUSER)) {
		c->setns_errno = errno;
		return NULL;
	}
	if (setns(c->nsfd, CLONE_NEWIPC)) {
		c->setns_errno = errno;
		return NULL;
	}
	for (int i = 0; i < c->ncalls; i++) {
		long r = syscall(c->nr[i], c->args[i][0], c->args[i][1], c->args[i][2], c->args[i][3], c->args[i][4], c->args[i][5]);
		c->result[i] = r < 0 ? -errno : r;
	}
	return NULL;
}

/* The jail's user namespace, open, when it is not ours; else -1. */
static int foreign_user_ns(pid_t pid)
{
	char path[64];
	struct stat theirs, ours;
	snprintf(path, sizeof path, "/proc/%d/ns/user", pid);
	if (stat(path, &theirs) || stat("/proc/self/ns/user", &ours) || theirs.st_ino == ours.st_ino)
		return -1;
	return open(path, O_RDONLY | O_CLOEXEC);
}

static int run_on_thread(struct ns_calls *c)
{
	pthread_t th;
	int err = pthread_create(&th, NULL, run_calls, c);
	if (!err)
		pthread_join(th, NULL);
	return err;
}

static int process_main(void *p)
{
	run_calls(p);
	return 0;
}

/* In a process sharing our memory and descriptors, which we wait for. */
static int run_in_process(struct ns_calls *c)
{
	pid_t child = vfork_clone(process_main, c, CLONE_FILES, 256 * 1024);
	if (child < 0)
		return errno;
	while (waitpid(child, NULL, __WALL) < 0 && errno == EINTR)
		;
	return 0;
}

/* ipcNsCalls(pid, [[nr, arg...], ...]): results (bigint, -errno on failure); a Buffer argument is passed as its address. */
napi_value js_ipc_ns_calls(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	if (vj_args(env, info, 2, argv))
		return NULL;
	pid_t pid = (pid_t)vj_i32(env, argv[0]);
	static struct ns_calls c;
	memset(&c, 0, sizeof c);
	uint32_t n;
	if (napi_get_array_length(env, argv[1], &n) != napi_ok || n > MAX_CALLS) {
		napi_throw_type_error(env, NULL, "ipcNsCalls: expected an array of at most 64 calls");
		return NULL;
	}
	c.ncalls = (int)n;
	for (uint32_t i = 0; i < n; i++) {
		napi_value call, v;
		uint32_t len;
		napi_get_element(env, argv[1], i, &call);
		if (napi_get_array_length(env, call, &len) != napi_ok || len < 1 || len > 7) {
			napi_throw_type_error(env, NULL, "ipcNsCalls: each call is [nr, up to 6 arguments]");
			return NULL;
		}
		napi_get_element(env, call, 0, &v);
		c.nr[i] = vj_i32(env, v);
		for (uint32_t k = 1; k < len; k++) {
			napi_get_element(env, call, k, &v);
			bool is_buffer = false;
			napi_is_buffer(env, v, &is_buffer);
			if (is_buffer) {
				void *data;
				size_t blen;
				if (vj_buffer(env, v, "an argument", &data, &blen))
					return NULL;
				c.args[i][k - 1] = (long)data;
			} else {
				napi_valuetype t;
				napi_typeof(env, v, &t);
				if (t == napi_number) {
					int64_t x;
					napi_get_value_int64(env, v, &x);
					c.args[i][k - 1] = (long)x;
				} else
					c.args[i][k - 1] = (long)vj_u64(env, v);
			}
		}
	}
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/ns/ipc", pid);
	c.nsfd = open(path, O_RDONLY | O_CLOEXEC);
	if (c.nsfd < 0)
		return vj_throw_errno(env, "open of the IPC namespace", errno);
	c.usernsfd = foreign_user_ns(pid);
	int err = c.usernsfd >= 0 ? run_in_process(&c) : run_on_thread(&c);
	close(c.nsfd);
	if (c.usernsfd >= 0)
		close(c.usernsfd);
	if (err)
		return vj_throw_errno(env, c.usernsfd >= 0 ? "clone of the IPC namespace helper" : "pthread_create", err);
	if (c.setns_errno)
		return vj_throw_errno(env, "setns into the jail's IPC namespace", c.setns_errno);
	napi_value out;
	napi_create_array_with_length(env, n, &out);
	for (uint32_t i = 0; i < n; i++) {
		napi_value v;
		napi_create_bigint_int64(env, c.result[i], &v);
		napi_set_element(env, out, i, v);
	}
	return out;
}
