/* The resident supervisor's socket and connections (resident.c). */
#ifndef VJAIL_RESIDENT_H
#define VJAIL_RESIDENT_H

#include <node_api.h>

napi_value js_resident_listen(napi_env env, napi_callback_info info);
napi_value js_resident_accept(napi_env env, napi_callback_info info);
napi_value js_resident_recv(napi_env env, napi_callback_info info);
napi_value js_resident_watch(napi_env env, napi_callback_info info);
napi_value js_resident_unwatch(napi_env env, napi_callback_info info);

#endif
