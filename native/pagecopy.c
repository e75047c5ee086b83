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
 *
 * pwriteAll and preadAll write or read many small pieces (pages read from a
 * frozen process, a migration's patches of them) each at its offset in one
 * call: through Node's fs, each 4 KiB pwrite cost some 10 µs more than the
 * call itself (2-5 µs), a stop's hundreds of them milliseconds.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
#include <unistd.h>

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

/* A Number that is a file offset: whole, not negative, exact in a double. */
static int file_offset(double x)
{
	return x >= 0 && x <= 9007199254740991.0 && x == (double)(uint64_t)x;
}

/*
 * Writes are made at most this long: the page cache gives a file written in
 * large pieces large folios (1 MiB written at once, 1 MiB folios), and on
 * ext4 a later 4 KiB write into one costs more the larger the folio (it
 * seems to handle the whole folio's blocks). On the VM this was measured
 * on, a 4 KiB write at a random offset cost 15 us into 1 MiB folios,
 * 6.7 us into 256 KiB ones, and writing 256 MiB in 256 KiB pieces took no
 * longer than in 1 MiB ones. A store is written whole first, then patched
 * page by page while the jail is stopped.
 */
#define WRITE_MAX ((size_t)256 << 10)

/* All `len` bytes at `at`, read or written: 0, 1 if the file ended first (or a write took nothing), or -errno. */
static int whole_io(int fd, char *p, size_t len, off_t at, int writing)
{
	for (size_t done = 0; done < len;) {
		size_t want = writing && len - done > WRITE_MAX ? WRITE_MAX : len - done;
		ssize_t n = writing ? pwrite(fd, p + done, want, at + (off_t)done) : pread(fd, p + done, want, at + (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 1;
		done += (size_t)n;
	}
	return 0;
}

/*
 * pwriteAll(fd, pieces, offsets): write each Buffer of `pieces` whole at the
 * offset of the same index in `offsets` (a Float64Array), in order (a later
 * piece over an earlier one wins). Throws on the first failure, naming the
 * piece; the pieces before it are written.
 */
napi_value js_pwrite_all(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	if (vj_args(env, info, 3, argv))
		return NULL;
	int fd = vj_i32(env, argv[0]);
	bool is_array = false;
	napi_is_array(env, argv[1], &is_array);
	if (!is_array) {
		napi_throw_type_error(env, NULL, "pwriteAll: the pieces must be an array of Buffers");
		return NULL;
	}
	uint32_t n = 0;
	napi_get_array_length(env, argv[1], &n);
	void *odata;
	size_t count;
	if (vj_typed_array(env, argv[2], napi_float64_array, "the offsets", "Float64Array", &odata, &count))
		return NULL;
	if (count != n) {
		napi_throw_range_error(env, NULL, "pwriteAll: one offset per piece");
		return NULL;
	}
	const double *offsets = odata;
	for (uint32_t i = 0; i < n; i++) {
		napi_value piece;
		void *data;
		size_t len;
		if (napi_get_element(env, argv[1], i, &piece) != napi_ok || vj_buffer(env, piece, "a piece", &data, &len))
			return NULL;
		if (!file_offset(offsets[i])) {
			napi_throw_range_error(env, NULL, "pwriteAll: an offset is not a file offset");
			return NULL;
		}
		int rc = whole_io(fd, data, len, (off_t)offsets[i], 1);
		if (rc)
			return vj_throw_errno(env, "pwrite", rc < 0 ? -rc : EIO);
	}
	return vj_undefined(env);
}

/*
 * preadAll(fd, buf, spans): read pieces of the file into `buf`, `spans` (a
 * Float64Array) three numbers a piece: where in buf, how many bytes, from
 * which offset of the file. Returns how many pieces were read whole before
 * one met the file's end; throws on an error.
 */
napi_value js_pread_all(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	if (vj_args(env, info, 3, argv))
		return NULL;
	int fd = vj_i32(env, argv[0]);
	void *bdata, *sdata;
	size_t blen, count;
	if (vj_buffer(env, argv[1], "the buffer", &bdata, &blen) ||
	    vj_typed_array(env, argv[2], napi_float64_array, "the spans", "Float64Array", &sdata, &count))
		return NULL;
	if (count % 3) {
		napi_throw_range_error(env, NULL, "preadAll: three numbers a piece");
		return NULL;
	}
	const double *sp = sdata;
	size_t n = count / 3;
	for (size_t i = 0; i < n; i++) {
		double into = sp[3 * i], len = sp[3 * i + 1], at = sp[3 * i + 2];
		if (!(into >= 0) || !(len >= 0) || into + len > (double)blen || !file_offset(at)) {
			napi_throw_range_error(env, NULL, "preadAll: a piece is outside the buffer or not at a file offset");
			return NULL;
		}
		int rc = whole_io(fd, (char *)bdata + (size_t)into, (size_t)len, (off_t)at, 0);
		if (rc < 0)
			return vj_throw_errno(env, "pread", -rc);
		if (rc > 0)
			return vj_make_i32(env, (int32_t)i);
	}
	return vj_make_i32(env, (int32_t)n);
}
