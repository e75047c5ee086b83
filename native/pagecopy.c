/*
 * Bulk copies of page data for checkpoint and restore.
 *
 * process_vm_readv/writev copy between our buffer and the traced process's
 * pages once; /proc/PID/mem goes through a kernel bounce page, copying twice.
 * They stop at the first page they cannot access (a mapping without read or
 * write permission: /proc/PID/mem can force those), and may be refused or
 * missing altogether; then a short count is returned, not an error, and the
 * caller goes on another way.
 *
 * sync_file_range(SYNC_FILE_RANGE_WRITE) starts writeback of a range of a
 * file that was just written, so that the fsync at its end waits for less.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/uio.h>

#include "napi_util.h"
#include "pagecopy.h"

/* pageRead(pid, addr, buf) / pageWrite(pid, addr, buf): bytes moved, fewer than buf.length at an inaccessible page. */
static napi_value page_copy(napi_env env, napi_callback_info info, int writing)
{
	napi_value argv[3];
	if (vj_args(env, info, 3, argv))
		return NULL;
	void *data;
	size_t len;
	if (vj_buffer(env, argv[2], "the data", &data, &len))
		return NULL;
	pid_t pid = (pid_t)vj_i32(env, argv[0]);
	uint64_t addr = vj_u64(env, argv[1]);
	size_t done = 0;
	while (done < len) {
		struct iovec local = { .iov_base = (char *)data + done, .iov_len = len - done };
		struct iovec remote = { .iov_base = (void *)(uintptr_t)(addr + done), .iov_len = len - done };
		ssize_t n = writing ? process_vm_writev(pid, &local, 1, &remote, 1, 0)
				    : process_vm_readv(pid, &local, 1, &remote, 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		/* EFAULT: a page it cannot access; EPERM, ENOSYS: not allowed or not there. */
		if (n < 0 && (errno == EFAULT || errno == EPERM || errno == ENOSYS))
			break;
		if (n < 0)
			return vj_throw_errno(env, writing ? "process_vm_writev" : "process_vm_readv", errno);
		if (n == 0)
			break;
		done += (size_t)n;
	}
	napi_value out;
	napi_create_double(env, (double)done, &out);
	return out;
}

napi_value js_page_read(napi_env env, napi_callback_info info)
{
	return page_copy(env, info, 0);
}

napi_value js_page_write(napi_env env, napi_callback_info info)
{
	return page_copy(env, info, 1);
}

/* syncFileRange(fd, offset, length): start writing that range back; does not wait for it. */
napi_value js_sync_file_range(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	if (vj_args(env, info, 3, argv))
		return NULL;
	int fd = vj_i32(env, argv[0]);
	off_t off = (off_t)vj_u64(env, argv[1]);
	off_t len = (off_t)vj_u64(env, argv[2]);
	if (sync_file_range(fd, off, len, SYNC_FILE_RANGE_WRITE))
		return vj_throw_errno(env, "sync_file_range", errno);
	return vj_undefined(env);
}
