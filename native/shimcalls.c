/*
 * Host syscalls made by shims in the supervisor (see shimcalls.h).
 */

#include <errno.h>
#include <node_api.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shimcalls.h"

#ifndef SYS_memfd_create
#define SYS_memfd_create 319
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

static napi_value result(napi_env env, long r)
{
	napi_value v;
	napi_create_int32(env, r < 0 ? -errno : (int32_t)r, &v);
	return v;
}

static int get_u32(napi_env env, napi_value v, uint32_t *out)
{
	return napi_get_value_uint32(env, v, out) != napi_ok;
}

napi_value js_shim_memfd_create(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2];
	void *data = NULL;
	size_t len = 0;
	uint32_t flags = 0;
	/* The longest name the kernel accepts is 249 bytes. */
	char name[256];
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
	    napi_get_buffer_info(env, argv[0], &data, &len) != napi_ok || len >= sizeof name ||
	    get_u32(env, argv[1], &flags)) {
		napi_throw_type_error(env, NULL, "shimMemfdCreate takes a name Buffer (< 256 bytes) and flags");
		return NULL;
	}
	memcpy(name, data, len);
	name[len] = '\0';
	return result(env, syscall(SYS_memfd_create, name, (unsigned int)flags));
}

napi_value js_shim_pidfd_open(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2];
	int32_t pid = 0;
	uint32_t flags = 0;
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
	    napi_get_value_int32(env, argv[0], &pid) != napi_ok || get_u32(env, argv[1], &flags)) {
		napi_throw_type_error(env, NULL, "shimPidfdOpen takes a pid and flags");
		return NULL;
	}
	return result(env, syscall(SYS_pidfd_open, (pid_t)pid, (unsigned int)flags));
}
