/*
 * Running syscalls in a jailed caller's own context (see docs/IN-CALLER.md):
 * a worker thread per session attaches to the caller thread with ptrace
 * while it waits in a seccomp notification, and injects syscalls through
 * the syscall instruction that made the notified call.
 */
#ifndef VJAIL_INCALLER_H
#define VJAIL_INCALLER_H

#include <node_api.h>

/* incallerStart(tid, archIndex, nr, ip): a session handle; nothing is attached yet. */
napi_value incaller_js_start(napi_env env, napi_callback_info info);
/* incallerCommand(session, op, a0..a6): a Promise of { err, value }; see incaller.c. */
napi_value incaller_js_command(napi_env env, napi_callback_info info);

#endif
