/* Starting the jail's launcher without forking Node (spawn.c). */
#ifndef VJAIL_SPAWN_H
#define VJAIL_SPAWN_H

#include <node_api.h>

napi_value js_spawn_inheriting(napi_env env, napi_callback_info info);
napi_value js_reap(napi_env env, napi_callback_info info);

#endif
