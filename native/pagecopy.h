/* Page data between this process, other processes and files: checkpoint and restore's bulk copies. */
#ifndef VJAIL_PAGECOPY_H
#define VJAIL_PAGECOPY_H

#include <node_api.h>

napi_value js_page_read(napi_env env, napi_callback_info info);
napi_value js_page_write(napi_env env, napi_callback_info info);
napi_value js_sync_file_range(napi_env env, napi_callback_info info);
napi_value js_pwrite_all(napi_env env, napi_callback_info info);
napi_value js_pread_all(napi_env env, napi_callback_info info);

#endif
