/*
 * Host syscalls that shims make in the supervisor on a caller's behalf, for
 * objects the supervisor creates and then installs in the caller (memfds,
 * pidfds). Each returns the new fd, or -errno; nothing throws.
 */
#ifndef VJAIL_SHIMCALLS_H
#define VJAIL_SHIMCALLS_H

#include <node_api.h>

/* shimMemfdCreate(name: Buffer without NUL, flags): fd or -errno. */
napi_value js_shim_memfd_create(napi_env env, napi_callback_info info);
/* shimPidfdOpen(pid, flags): fd or -errno. */
napi_value js_shim_pidfd_open(napi_env env, napi_callback_info info);

/* shimIdentityEnter(euid, egid, fsuid, fsgid, groups, capEff, umask): 0 or errno; the calling thread then
 * opens as that caller until shimIdentityLeave(). */
napi_value js_shim_identity_enter(napi_env env, napi_callback_info info);
napi_value js_shim_identity_leave(napi_env env, napi_callback_info info);

/* shimInodeFlags(path): FS_IOC_GETFLAGS of a regular file or directory, or -errno. */
napi_value js_shim_inode_flags(napi_env env, napi_callback_info info);

#endif
