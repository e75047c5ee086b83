#include "napi_util.h"

#include <stdio.h>
#include <string.h>

napi_value vj_throw_errno(napi_env env, const char *op, int err)
{
	char msg[256];
	const char *name = strerrorname_np(err);
	snprintf(msg, sizeof msg, "%s: %s (%s)", op, strerror(err), name ? name : "?");
	napi_value m, e, v;
	napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
	napi_create_error(env, NULL, m, &e);
	napi_create_int32(env, err, &v);
	napi_set_named_property(env, e, "errno", v);
	napi_create_string_utf8(env, name ? name : "UNKNOWN", NAPI_AUTO_LENGTH, &v);
	napi_set_named_property(env, e, "code", v);
	napi_create_string_utf8(env, op, NAPI_AUTO_LENGTH, &v);
	napi_set_named_property(env, e, "syscall", v);
	napi_throw(env, e);
	return NULL;
}

int vj_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv)
{
	size_t argc = want;
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
		napi_throw_type_error(env, NULL, "too few arguments");
		return -1;
	}
	return 0;
}

int32_t vj_i32(napi_env env, napi_value v)
{
	int32_t x = 0;
	napi_get_value_int32(env, v, &x);
	return x;
}

uint64_t vj_u64(napi_env env, napi_value v)
{
	uint64_t x = 0;
	bool lossless;
	if (napi_get_value_bigint_uint64(env, v, &x, &lossless) != napi_ok) {
		int64_t i = 0;
		napi_get_value_int64(env, v, &i);
		x = (uint64_t)i;
	}
	return x;
}

napi_value vj_make_i32(napi_env env, int32_t x)
{
	napi_value v;
	napi_create_int32(env, x, &v);
	return v;
}

napi_value vj_make_u64(napi_env env, uint64_t x)
{
	napi_value v;
	napi_create_bigint_uint64(env, x, &v);
	return v;
}

napi_value vj_undefined(napi_env env)
{
	napi_value v;
	napi_get_undefined(env, &v);
	return v;
}

void vj_set_number(napi_env env, napi_value obj, const char *key, double x)
{
	napi_value v;
	napi_create_double(env, x, &v);
	napi_set_named_property(env, obj, key, v);
}

int vj_typed_array(napi_env env, napi_value v, napi_typedarray_type want, const char *what, const char *kind, void **data, size_t *count)
{
	napi_typedarray_type type;
	if (napi_get_typedarray_info(env, v, &type, count, data, NULL, NULL) == napi_ok && type == want)
		return 0;
	char msg[128];
	snprintf(msg, sizeof msg, "%s must be a %s", what, kind);
	napi_throw_type_error(env, NULL, msg);
	return -1;
}

int vj_buffer(napi_env env, napi_value v, const char *what, void **data, size_t *len)
{
	if (napi_get_buffer_info(env, v, data, len) == napi_ok)
		return 0;
	char msg[128];
	snprintf(msg, sizeof msg, "%s must be a Buffer", what);
	napi_throw_type_error(env, NULL, msg);
	return -1;
}
