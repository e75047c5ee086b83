/* The addon's side of vjail-guard (guard.c). */
#ifndef VJAIL_GUARD_NAPI_H
#define VJAIL_GUARD_NAPI_H

#include <node_api.h>

napi_value js_guard_table_fd(napi_env env, napi_callback_info info);
napi_value js_guard_cgroup(napi_env env, napi_callback_info info);
napi_value js_guard_task(napi_env env, napi_callback_info info);
napi_value js_guard_signal(napi_env env, napi_callback_info info);

#endif
