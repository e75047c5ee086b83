/*
 * Host feature probes for `vjail check`, and sealed memfds.
 *
 * Every probe reports 0 when the feature works, else the errno the kernel
 * gave. Probes that install a seccomp filter run in a throwaway child.
 */

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "features.h"
#include "napi_util.h"
#include "seccomp_compat.h"

/* struct pm_scan_arg is 96 bytes; the ioctl number encodes that size. */
#ifndef PAGEMAP_SCAN
#define PAGEMAP_SCAN _IOWR('f', 16, char[96])
#endif

static napi_value fail(napi_env env, const char *op, int err)
{
	char msg[160];
	snprintf(msg, sizeof msg, "%s: %s", op, strerror(err));
	napi_value m, e, v;
	napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
	napi_create_error(env, NULL, m, &e);
	napi_create_int32(env, err, &v);
	napi_set_named_property(env, e, "errno", v);
	napi_create_string_utf8(env, op, NAPI_AUTO_LENGTH, &v);
	napi_set_named_property(env, e, "syscall", v);
	napi_throw(env, e);
	return NULL;
}

napi_value js_memfd_sealed(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2];
	char name[64] = "";
	void *data = NULL;
	size_t len = 0, namelen = 0;
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
	    napi_get_value_string_utf8(env, argv[0], name, sizeof name, &namelen) != napi_ok ||
	    napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) {
		napi_throw_type_error(env, NULL, "memfdSealed takes a name and a Buffer");
		return NULL;
	}
	int fd = (int)syscall(SYS_memfd_create, name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return fail(env, "memfd_create", errno);
	size_t done = 0;
	while (done < len) {
		ssize_t w = write(fd, (char *)data + done, len - done);
		if (w < 0) {
			int err = errno;
			close(fd);
			return fail(env, "write (memfd)", err);
		}
		done += (size_t)w;
	}
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL)) {
		int err = errno;
		close(fd);
		return fail(env, "fcntl F_ADD_SEALS", err);
	}
	/* Reopen read-only: a new open file description that cannot be written through. */
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	int ro = open(path, O_RDONLY | O_CLOEXEC);
	int err = errno;
	close(fd);
	if (ro < 0)
		return fail(env, "open (memfd, read-only)", err);
	napi_value out;
	napi_create_int32(env, ro, &out);
	return out;
}

/* In a child: install an allow-everything filter with a listener and try the
 * listener ioctls. Writes three ints (listener, sync wake-up, addfd) to `out`. */
static void probe_listener_child(int out)
{
	int res[3] = { ENOSYS, ENOSYS, ENOSYS };
	struct sock_filter insn = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	struct sock_fprog prog = { .len = 1, .filter = &insn };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0) {
		int listener = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
		if (listener < 0) {
			res[0] = errno;
		} else {
			res[0] = 0;
			__u64 flags = SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP;
			res[1] = ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, flags) == 0 ? 0 : errno;
			/* No notification has this id: a kernel with ADDFD says ENOENT. */
			struct seccomp_notif_addfd add = { .id = 0x766a61696cULL, .srcfd = (__u32)out };
			int r = ioctl(listener, SECCOMP_IOCTL_NOTIF_ADDFD, &add);
			res[2] = r < 0 && errno == ENOENT ? 0 : (r < 0 ? errno : 0);
		}
	} else {
		res[0] = errno;
	}
	if (write(out, res, sizeof res) != (ssize_t)sizeof res)
		_exit(1);
	_exit(0);
}

static int probe_pagemap_scan(void)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	char arg[96];
	memset(arg, 0, sizeof arg); /* size 0: a kernel with the ioctl rejects it with EINVAL */
	int r = ioctl(fd, PAGEMAP_SCAN, arg);
	int err = r < 0 ? errno : 0;
	close(fd);
	return err == EINVAL ? 0 : (err ? err : 0);
}

/* A freshly written page is soft-dirty (pagemap bit 55) only with CONFIG_MEM_SOFT_DIRTY. */
static int probe_soft_dirty(void)
{
	long page = sysconf(_SC_PAGESIZE);
	volatile char *p = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return errno;
	p[0] = 1;
	int err = ENOTSUP;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = errno;
	} else {
		uint64_t entry = 0;
		off_t at = (off_t)(((uintptr_t)p / (uintptr_t)page) * sizeof entry);
		if (pread(fd, &entry, sizeof entry, at) == (ssize_t)sizeof entry && (entry >> 63) & 1)
			err = (entry >> 55) & 1 ? 0 : ENOTSUP;
		close(fd);
	}
	munmap((void *)p, (size_t)page);
	return err;
}

napi_value js_probe_features(napi_env env, napi_callback_info info)
{
	(void)info;
	int res[3] = { ENOSYS, ENOSYS, ENOSYS };
	int fds[2];
	if (pipe2(fds, O_CLOEXEC))
		return fail(env, "pipe2", errno);
	pid_t pid = fork();
	if (pid < 0) {
		int err = errno;
		close(fds[0]);
		close(fds[1]);
		return fail(env, "fork", err);
	}
	if (pid == 0) {
		close(fds[0]);
		probe_listener_child(fds[1]);
	}
	close(fds[1]);
	ssize_t got;
	do
		got = read(fds[0], res, sizeof res);
	while (got < 0 && errno == EINTR);
	close(fds[0]);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	napi_value out;
	napi_create_object(env, &out);
	vj_set_number(env, out, "listener", got == (ssize_t)sizeof res ? res[0] : ECHILD);
	vj_set_number(env, out, "syncWakeUp", got == (ssize_t)sizeof res ? res[1] : ECHILD);
	vj_set_number(env, out, "addfd", got == (ssize_t)sizeof res ? res[2] : ECHILD);
	vj_set_number(env, out, "pagemapScan", probe_pagemap_scan());
	vj_set_number(env, out, "softDirty", probe_soft_dirty());
	return out;
}
