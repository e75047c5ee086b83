/* sha256 of page data chunk by chunk (chunkhash.c). */
#ifndef VJAIL_CHUNKHASH_H
#define VJAIL_CHUNKHASH_H

#include <node_api.h>

napi_value js_sha256_chunks(napi_env env, napi_callback_info info);

#endif
