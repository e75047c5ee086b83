/* Sockets for checkpoint: unix_diag and a non-consuming peek (sockdiag.c). */
#ifndef VJAIL_SOCKDIAG_H
#define VJAIL_SOCKDIAG_H

#include <node_api.h>

napi_value js_unix_diag(napi_env env, napi_callback_info info);
napi_value js_sock_peek(napi_env env, napi_callback_info info);

#endif
