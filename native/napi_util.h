/* Small Node-API helpers shared by every file of the addon. */
#ifndef VJAIL_NAPI_UTIL_H
#define VJAIL_NAPI_UTIL_H

#include <node_api.h>
#include <stddef.h>
#include <stdint.h>

/* Throw an Error carrying errno, code (e.g. "EFAULT") and syscall (op), like Node's own; returns NULL. */
napi_value vj_throw_errno(napi_env env, const char *op, int err);
/* Fetch exactly `want` arguments; throws a TypeError and returns -1 if fewer were passed. */
int vj_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv);
int32_t vj_i32(napi_env env, napi_value v);
/* A BigInt, or a Number taken as a 64-bit integer. */
uint64_t vj_u64(napi_env env, napi_value v);
napi_value vj_make_i32(napi_env env, int32_t x);
napi_value vj_make_u64(napi_env env, uint64_t x);
napi_value vj_undefined(napi_env env);
/* The bytes of Buffer v; throws a TypeError naming `what` and returns -1 if v is not one. */
int vj_buffer(napi_env env, napi_value v, const char *what, void **data, size_t *len);
/* The elements of typed array v (`count` of them); throws a TypeError naming `what` and `kind` and returns -1 if v is not one of type `want`. */
int vj_typed_array(napi_env env, napi_value v, napi_typedarray_type want, const char *what, const char *kind, void **data, size_t *count);
/* obj[key] = x (a Number). */
void vj_set_number(napi_env env, napi_value obj, const char *key, double x);

#endif
