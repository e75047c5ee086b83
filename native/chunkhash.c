/*
 * sha256 of page data chunk by chunk, for the image writer's hashing thread
 * (src/image/pagedata.ts) and for a migration's pre-dump stores
 * (src/migrate/store-digests.ts): equal chunks two at a time with the CPU's SHA
 * instructions where it has them (sha256pair.c: a pair costs about 1.2
 * times one), else, and for a lone or shorter last chunk, OpenSSL's.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "chunkhash.h"
#include "napi_util.h"
#include "sha256pair.h"

/* One chunk by OpenSSL; false if it failed (never expected). */
static bool digest_one(const uint8_t *data, size_t len, uint8_t out[32])
{
	unsigned int n = 0;
	return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) && n == 32;
}

/* Does vj_sha256_pair give OpenSSL's digests here (a few blocks and a tail)? Checked per call: it costs microseconds. */
static bool pair_usable(void)
{
	if (!vj_sha256_pair_supported())
		return false;
	uint8_t data[2][200], ours[2][32], theirs[32];
	for (size_t i = 0; i < sizeof data[0]; i++) {
		data[0][i] = (uint8_t)(i * 7 + 1);
		data[1][i] = (uint8_t)(i * 13 + 5);
	}
	vj_sha256_pair((const uint8_t *const[2]){ data[0], data[1] }, sizeof data[0], ours);
	for (int i = 0; i < 2; i++)
		if (!digest_one(data[i], sizeof data[i], theirs) || memcmp(ours[i], theirs, 32) != 0)
			return false;
	return true;
}

/*
 * sha256Chunks(data, chunk): a Buffer of the 32-byte sha256 of each `chunk`
 * bytes of `data` (a Uint8Array) in turn, the last piece possibly shorter.
 */
napi_value js_sha256_chunks(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	if (vj_args(env, info, 2, argv) < 0)
		return NULL;
	size_t len = 0;
	void *raw = NULL;
	if (vj_typed_array(env, argv[0], napi_uint8_array, "sha256Chunks: data", "Uint8Array", &raw, &len) < 0)
		return NULL;
	int64_t chunk = 0;
	napi_get_value_int64(env, argv[1], &chunk);
	if (chunk <= 0)
		return vj_throw_errno(env, "sha256Chunks: the chunk size", EINVAL);
	const uint8_t *data = raw;
	size_t size = (size_t)chunk, count = len ? (len + size - 1) / size : 0;
	void *outp;
	napi_value out;
	if (napi_create_buffer(env, count * 32, &outp, &out) != napi_ok)
		return vj_throw_errno(env, "sha256Chunks: result", ENOMEM);
	uint8_t(*sums)[32] = outp;
	size_t i = 0;
	if (count >= 2 && pair_usable())
		for (; i + 1 < count && (i + 2) * size <= len; i += 2)
			vj_sha256_pair((const uint8_t *const[2]){ data + i * size, data + (i + 1) * size }, size, &sums[i]);
	for (; i < count; i++) {
		size_t at = i * size, n = len - at < size ? len - at : size;
		if (!digest_one(data + at, n, sums[i]))
			return vj_throw_errno(env, "sha256Chunks: OpenSSL's sha256", EIO);
	}
	return out;
}

/* Read [at, at + len) of fd whole: 0, or -1 with errno (EIO where the file ends first). */
static int pread_all(int fd, uint8_t *buf, size_t len, off_t at)
{
	for (size_t got = 0; got < len;) {
		ssize_t n = pread(fd, buf + got, len - got, at + (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return -1;
		}
		got += (size_t)n;
	}
	return 0;
}

/* Chunks idx[from..to) of a file, hashed into sums[from..to); errno or 0. */
struct file_chunks {
	int fd;
	size_t chunk;
	int64_t size;
	const uint32_t *idx;
	size_t from, to;
	bool pair;
	uint8_t (*sums)[32];
	int err;
};

static void *hash_file_chunks(void *arg)
{
	struct file_chunks *w = arg;
	size_t c = w->chunk;
	uint8_t *buf = malloc(2 * c);
	if (!buf) {
		w->err = ENOMEM;
		return NULL;
	}
	for (size_t k = w->from; k < w->to && !w->err;) {
		off_t at = (off_t)w->idx[k] * (off_t)c;
		size_t n = (size_t)(w->size - at) < c ? (size_t)(w->size - at) : c;
		if (pread_all(w->fd, buf, n, at)) {
			w->err = errno;
			break;
		}
		if (w->pair && n == c && k + 1 < w->to) {
			off_t at2 = (off_t)w->idx[k + 1] * (off_t)c;
			if ((size_t)(w->size - at2) >= c) {
				if (pread_all(w->fd, buf + c, c, at2)) {
					w->err = errno;
					break;
				}
				vj_sha256_pair((const uint8_t *const[2]){ buf, buf + c }, c, &w->sums[k]);
				k += 2;
				continue;
			}
		}
		if (!digest_one(buf, n, w->sums[k]))
			w->err = EIO;
		k++;
	}
	free(buf);
	return NULL;
}

/* Below this many chunks one thread hashes them all: a second one costs more to start than it saves. */
#define SPLIT_FROM 16

/*
 * sha256FileChunks(fd, chunk, size, indexes): the 32-byte sha256 of chunk
 * `indexes[k]` (a Uint32Array) of the file's first `size` bytes, for each k
 * in turn, read here with pread: a store's chunks written since it was last
 * hashed, scattered, two at a time with the CPU's SHA instructions, on
 * two threads when there are many. Throws EIO if the file is shorter.
 */
napi_value js_sha256_file_chunks(napi_env env, napi_callback_info info)
{
	napi_value argv[4];
	if (vj_args(env, info, 4, argv) < 0)
		return NULL;
	int fd = vj_i32(env, argv[0]);
	int64_t chunk = 0, size = 0;
	napi_get_value_int64(env, argv[1], &chunk);
	napi_get_value_int64(env, argv[2], &size);
	size_t count = 0;
	void *raw = NULL;
	if (vj_typed_array(env, argv[3], napi_uint32_array, "sha256FileChunks: indexes", "Uint32Array", &raw, &count) < 0)
		return NULL;
	if (chunk <= 0 || size < 0)
		return vj_throw_errno(env, "sha256FileChunks: the chunk size", EINVAL);
	const uint32_t *idx = raw;
	for (size_t k = 0; k < count; k++)
		if ((int64_t)idx[k] * chunk >= size)
			return vj_throw_errno(env, "sha256FileChunks: a chunk past the end", EINVAL);
	void *outp;
	napi_value out;
	if (napi_create_buffer(env, count * 32, &outp, &out) != napi_ok)
		return vj_throw_errno(env, "sha256FileChunks: result", ENOMEM);
	bool pair = count >= 2 && pair_usable();
	struct file_chunks all = { fd, (size_t)chunk, size, idx, 0, count, pair, outp, 0 };
	/*
	 * With many chunks (a migration's last round, while the jail is stopped)
	 * and a CPU to spare, a second thread takes the second half: an even
	 * split, so that pairs stay pairs.
	 */
	pthread_t helper;
	struct file_chunks second = all;
	bool split = count >= SPLIT_FROM && sysconf(_SC_NPROCESSORS_ONLN) > 1;
	if (split) {
		second.from = (count / 2) & ~(size_t)1;
		all.to = second.from;
		split = pthread_create(&helper, NULL, hash_file_chunks, &second) == 0;
		if (!split)
			all.to = count;
	}
	hash_file_chunks(&all);
	if (split) {
		pthread_join(helper, NULL);
		if (!all.err)
			all.err = second.err;
	}
	if (all.err)
		return vj_throw_errno(env, "sha256FileChunks", all.err);
	return out;
}
