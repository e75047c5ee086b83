/* The supervisor as Node sees it: start, respond, stop, stats (supervisor_napi.c). */
#ifndef VJAIL_SUPERVISOR_NAPI_H
#define VJAIL_SUPERVISOR_NAPI_H

#include <node_api.h>

napi_value js_supervisor_start(napi_env env, napi_callback_info info);
napi_value js_supervisor_respond(napi_env env, napi_callback_info info);
napi_value js_supervisor_id_valid(napi_env env, napi_callback_info info);
napi_value js_supervisor_addfd(napi_env env, napi_callback_info info);
napi_value js_supervisor_stats(napi_env env, napi_callback_info info);
napi_value js_supervisor_state(napi_env env, napi_callback_info info);
napi_value js_supervisor_stop(napi_env env, napi_callback_info info);

#endif
