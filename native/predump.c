/*
 * Dirty-page tracking for the iterative pre-dump (src/checkpoint/predump.ts):
 * a userfaultfd in asynchronous write-protect mode (the kernel resolves each
 * write fault itself and only clears the page's write-protect bit: the
 * workload never waits for us) and PAGEMAP_SCAN, which lists the pages
 * written since they were last protected and protects them again in the
 * same walk. Both are older or newer than this system's headers: the
 * numbers are the kernel's ABI (Linux 6.7+).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/userfaultfd.h>

#include "napi_util.h"
#include "predump.h"

struct vj_page_region {
	uint64_t start;
	uint64_t end;
	uint64_t categories;
};

struct vj_pm_scan_arg {
	uint64_t size;
	uint64_t flags;
	uint64_t start;
	uint64_t end;
	uint64_t walk_end;
	uint64_t vec;
	uint64_t vec_len;
	uint64_t max_pages;
	uint64_t category_inverted;
	uint64_t category_mask;
	uint64_t category_anyof_mask;
	uint64_t return_mask;
};

#define VJ_PAGEMAP_SCAN _IOWR('f', 16, struct vj_pm_scan_arg)
#define REGIONS 512

/* uffdApi(fd, features): UFFDIO_API asking for `features`; the features granted. Throws the errno. */
napi_value js_uffd_api(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	if (vj_args(env, info, 2, argv))
		return NULL;
	struct uffdio_api api = { .api = UFFD_API, .features = vj_u64(env, argv[1]) };
	if (ioctl(vj_i32(env, argv[0]), UFFDIO_API, &api))
		return vj_throw_errno(env, "UFFDIO_API", errno);
	return vj_make_u64(env, api.features);
}

/*
 * uffdRange(fd, op, start, len): 0 or the errno (never throws: a range the
 * kernel will not take is the caller's to decide about). op 0: register in
 * write-protect mode; 1: write-protect every page; 2: unregister.
 */
napi_value js_uffd_range(napi_env env, napi_callback_info info)
{
	napi_value argv[4];
	if (vj_args(env, info, 4, argv))
		return NULL;
	int fd = vj_i32(env, argv[0]);
	int op = vj_i32(env, argv[1]);
	struct uffdio_range range = { .start = vj_u64(env, argv[2]), .len = vj_u64(env, argv[3]) };
	int r;
	if (op == 0) {
		struct uffdio_register reg = { .range = range, .mode = UFFDIO_REGISTER_MODE_WP };
		r = ioctl(fd, UFFDIO_REGISTER, &reg);
	} else if (op == 1) {
		struct uffdio_writeprotect wp = { .range = range, .mode = UFFDIO_WRITEPROTECT_MODE_WP };
		do
			r = ioctl(fd, UFFDIO_WRITEPROTECT, &wp);
		while (r && errno == EAGAIN);
	} else {
		r = ioctl(fd, UFFDIO_UNREGISTER, &range);
	}
	return vj_make_i32(env, r ? errno : 0);
}

/*
 * pagemapScan(fd, start, end, flags, categoryMask, anyofMask, returnMask): PAGEMAP_SCAN
 * over [start, end) of the process whose pagemap `fd` is, as many calls as
 * it takes; a Buffer of (start, end, categories) triples of 64-bit words,
 * the ranges of pages matching the masks, each with the categories of
 * returnMask its pages have (a range's pages have the same). Throws the errno (EPERM: a range without
 * asynchronous write-protect, asked for with PM_SCAN_CHECK_WPASYNC).
 */
napi_value js_pagemap_scan(napi_env env, napi_callback_info info)
{
	napi_value argv[7];
	if (vj_args(env, info, 7, argv))
		return NULL;
	int fd = vj_i32(env, argv[0]);
	uint64_t at = vj_u64(env, argv[1]);
	uint64_t end = vj_u64(env, argv[2]);
	struct vj_page_region regions[REGIONS];
	uint64_t *out = NULL;
	size_t n = 0, cap = 0;
	while (at < end) {
		struct vj_pm_scan_arg arg = {
			.size = sizeof arg,
			.flags = vj_u64(env, argv[3]),
			.start = at,
			.end = end,
			.vec = (uint64_t)(uintptr_t)regions,
			.vec_len = REGIONS,
			.category_mask = vj_u64(env, argv[4]),
			.category_anyof_mask = vj_u64(env, argv[5]),
			.return_mask = vj_u64(env, argv[6]),
		};
		long got = ioctl(fd, VJ_PAGEMAP_SCAN, &arg);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			int err = errno;
			free(out);
			return vj_throw_errno(env, "PAGEMAP_SCAN", err);
		}
		if (n + (size_t)got * 3 > cap) {
			cap = (n + (size_t)got * 3) * 2;
			uint64_t *grown = realloc(out, cap * sizeof *out);
			if (!grown) {
				free(out);
				return vj_throw_errno(env, "PAGEMAP_SCAN", ENOMEM);
			}
			out = grown;
		}
		for (long i = 0; i < got; i++) {
			out[n++] = regions[i].start;
			out[n++] = regions[i].end;
			out[n++] = regions[i].categories;
		}
		if (arg.walk_end <= at)
			break;
		at = arg.walk_end;
	}
	napi_value buf;
	void *data;
	napi_create_buffer_copy(env, n * sizeof *out, n ? (void *)out : (void *)"", &data, &buf);
	free(out);
	return buf;
}
