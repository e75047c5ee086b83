/* Raw system calls inside a jail's IPC namespace, and lseek for SEEK_DATA/SEEK_HOLE. */
#ifndef VJAIL_IPCNS_H
#define VJAIL_IPCNS_H

#include <node_api.h>

napi_value js_ipc_ns_calls(napi_env env, napi_callback_info info);
napi_value js_lseek(napi_env env, napi_callback_info info);

#endif
