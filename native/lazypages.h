/* Lazy restore: a restored process's userfaultfd served on a thread of its own (lazypages.c). */
#ifndef VJAIL_LAZYPAGES_H
#define VJAIL_LAZYPAGES_H

#include <node_api.h>

napi_value js_lazy_start(napi_env env, napi_callback_info info);
napi_value js_lazy_prefetch(napi_env env, napi_callback_info info);
napi_value js_lazy_stop(napi_env env, napi_callback_info info);

#endif
