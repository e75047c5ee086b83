/* ptrace primitives for checkpoint and restore, exported through the addon. */
#ifndef VJAIL_PTRACE_H
#define VJAIL_PTRACE_H

#include <node_api.h>

napi_value js_ptrace_seize(napi_env env, napi_callback_info info);
napi_value js_ptrace_interrupt(napi_env env, napi_callback_info info);
napi_value js_ptrace_wait(napi_env env, napi_callback_info info);
napi_value js_ptrace_resume(napi_env env, napi_callback_info info);
napi_value js_ptrace_get_regset(napi_env env, napi_callback_info info);
napi_value js_ptrace_set_regset(napi_env env, napi_callback_info info);
napi_value js_ptrace_get_sigmask(napi_env env, napi_callback_info info);
napi_value js_ptrace_set_sigmask(napi_env env, napi_callback_info info);
napi_value js_ptrace_rseq_config(napi_env env, napi_callback_info info);
napi_value js_ptrace_peek_siginfo(napi_env env, napi_callback_info info);
napi_value js_ptrace_set_options(napi_env env, napi_callback_info info);
napi_value js_ptrace_get_event_msg(napi_env env, napi_callback_info info);
napi_value js_ptrace_syscall_batch(napi_env env, napi_callback_info info);
napi_value js_kcmp_file(napi_env env, napi_callback_info info);
napi_value js_kcmp_file_order(napi_env env, napi_callback_info info);

#endif
