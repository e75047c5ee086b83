/* Raw system calls inside a jail's IPC namespace. */
#ifndef VJAIL_IPCNS_H
#define VJAIL_IPCNS_H

#include <node_api.h>

napi_value js_ipc_ns_calls(napi_env env, napi_callback_info info);

#endif
