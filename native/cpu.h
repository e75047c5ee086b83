/* What the CPU offers for saving and restoring user state (XSAVE). */
#ifndef VJAIL_CPU_H
#define VJAIL_CPU_H

#include <node_api.h>

napi_value js_cpu_xstate(napi_env env, napi_callback_info info);

#endif
