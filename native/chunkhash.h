/* sha256 of page data chunk by chunk, in memory or read from a file (chunkhash.c). */
#ifndef VJAIL_CHUNKHASH_H
#define VJAIL_CHUNKHASH_H

#include <node_api.h>

napi_value js_sha256_chunks(napi_env env, napi_callback_info info);
napi_value js_sha256_file_chunks(napi_env env, napi_callback_info info);

#endif
