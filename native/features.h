/*
 * Host feature probes and sealed in-memory files (memfds) for the shims that
 * present file contents (/proc/version and friends).
 */
#ifndef VJAIL_FEATURES_H
#define VJAIL_FEATURES_H

#include <node_api.h>

/* memfdSealed(name, data): a read-only fd of a sealed memfd holding data. */
napi_value js_memfd_sealed(napi_env env, napi_callback_info info);
/* probeFeatures(): { listener, syncWakeUp, addfd, pagemapScan, softDirty } as errno-or-0 numbers. */
napi_value js_probe_features(napi_env env, napi_callback_info info);

#endif
