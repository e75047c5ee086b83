/* File descriptors for checkpoint and restore (fdio.c). */
#ifndef VJAIL_FDIO_H
#define VJAIL_FDIO_H

#include <node_api.h>

napi_value js_sys(napi_env env, napi_callback_info info);
napi_value js_pipe_peek(napi_env env, napi_callback_info info);
napi_value js_send_fd(napi_env env, napi_callback_info info);
napi_value js_probe_fds(napi_env env, napi_callback_info info);
napi_value js_outside_links(napi_env env, napi_callback_info info);

#endif
