#ifndef VJ_PREDUMP_H
#define VJ_PREDUMP_H
#include <node_api.h>

napi_value js_uffd_api(napi_env env, napi_callback_info info);
napi_value js_uffd_range(napi_env env, napi_callback_info info);
napi_value js_pagemap_scan(napi_env env, napi_callback_info info);

#endif
