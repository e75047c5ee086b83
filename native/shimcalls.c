/*
 * Host syscalls made by shims in the supervisor (see shimcalls.h).
 */

#include <errno.h>
#include <node_api.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "caps.h"
#include "shimcalls.h"

#ifndef SYS_memfd_create
#define SYS_memfd_create 319
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

static napi_value result(napi_env env, long r)
{
	napi_value v;
	napi_create_int32(env, r < 0 ? -errno : (int32_t)r, &v);
	return v;
}

static int get_u32(napi_env env, napi_value v, uint32_t *out)
{
	return napi_get_value_uint32(env, v, out) != napi_ok;
}

napi_value js_shim_memfd_create(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2];
	void *data = NULL;
	size_t len = 0;
	uint32_t flags = 0;
	/* The longest name the kernel accepts is 249 bytes. */
	char name[256];
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
	    napi_get_buffer_info(env, argv[0], &data, &len) != napi_ok || len >= sizeof name ||
	    get_u32(env, argv[1], &flags)) {
		napi_throw_type_error(env, NULL, "shimMemfdCreate takes a name Buffer (< 256 bytes) and flags");
		return NULL;
	}
	memcpy(name, data, len);
	name[len] = '\0';
	return result(env, syscall(SYS_memfd_create, name, (unsigned int)flags));
}

napi_value js_shim_pidfd_open(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2];
	int32_t pid = 0;
	uint32_t flags = 0;
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
	    napi_get_value_int32(env, argv[0], &pid) != napi_ok || get_u32(env, argv[1], &flags)) {
		napi_throw_type_error(env, NULL, "shimPidfdOpen takes a pid and flags");
		return NULL;
	}
	return result(env, syscall(SYS_pidfd_open, (pid_t)pid, (unsigned int)flags));
}

/* ---- taking a caller's identity on the calling thread --------------------
 *
 * The credentials the kernel checks in a path lookup and open are the
 * thread's own: fsuid, fsgid, supplementary groups and effective
 * capabilities. All four are per thread when set with raw syscalls (glibc's
 * wrappers of setgroups and capset would broadcast to every thread), so the
 * supervisor's main thread can wear a caller's identity for the span of one
 * synchronous open and take its own back afterwards. The umask is per
 * fs_struct (the whole process): it is set around the same span.
 */

#include <linux/capability.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>

struct identity {
	uid_t euid;
	gid_t egid;
	uid_t fsuid;
	gid_t fsgid;
	int dumpable;
	int ngroups;
	gid_t *groups;
	struct __user_cap_data_struct caps[2];
	mode_t umask;
};

static struct identity own;
static int wearing;

static long set_groups(int n, const gid_t *g)
{
	return syscall(SYS_setgroups, n, g);
}

/* setfsuid and setfsgid report no error: the id in force afterwards tells. */
static int set_fsuid(uid_t u)
{
	syscall(SYS_setfsuid, u);
	return (uid_t)syscall(SYS_setfsuid, (uid_t)-1) == u ? 0 : EPERM;
}

static int set_fsgid(gid_t g)
{
	syscall(SYS_setfsgid, g);
	return (gid_t)syscall(SYS_setfsgid, (gid_t)-1) == g ? 0 : EPERM;
}

/* setresuid/setresgid of the effective id only, on this thread alone (raw syscalls). */
static int set_euid(uid_t u)
{
	return syscall(SYS_setresuid, (uid_t)-1, u, (uid_t)-1) ? errno : 0;
}

static int set_egid(gid_t g)
{
	return syscall(SYS_setresgid, (gid_t)-1, g, (gid_t)-1) ? errno : 0;
}

static void take_back(void)
{
	/* Effective capabilities first: they allow the id changes that follow
	 * (the permitted set survives, as the real and saved uids stay ours). */
	cap_set(own.caps);
	set_euid(own.euid);
	set_egid(own.egid);
	set_fsuid(own.fsuid);
	set_fsgid(own.fsgid);
	set_groups(own.ngroups, own.groups);
	cap_set(own.caps);
	umask(own.umask);
	/* Changing ids made the process undumpable (commit_creds): as it was. */
	prctl(PR_SET_DUMPABLE, own.dumpable, 0, 0, 0);
	free(own.groups);
	own.groups = NULL;
	wearing = 0;
}

/*
 * shimIdentityEnter(euid, egid, fsuid, fsgid, groups: number[], capEff: bigint,
 * umask): 0, or the errno that prevents taking that identity (nothing changed
 * then). The effective ids matter besides the fs ids: procfs sysctls check
 * the effective uid.
 */
napi_value js_shim_identity_enter(napi_env env, napi_callback_info info)
{
	size_t argc = 7;
	napi_value argv[7];
	uint32_t euid, egid, fsuid, fsgid, nmask, ngroups = 0;
	uint64_t cap_eff = 0;
	bool lossless;
	bool is_array = false;
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 7 || get_u32(env, argv[0], &euid) ||
	    get_u32(env, argv[1], &egid) || get_u32(env, argv[2], &fsuid) || get_u32(env, argv[3], &fsgid) ||
	    napi_is_array(env, argv[4], &is_array) != napi_ok || !is_array ||
	    napi_get_array_length(env, argv[4], &ngroups) != napi_ok ||
	    napi_get_value_bigint_uint64(env, argv[5], &cap_eff, &lossless) != napi_ok || get_u32(env, argv[6], &nmask)) {
		napi_throw_type_error(env, NULL, "shimIdentityEnter takes euid, egid, fsuid, fsgid, groups[], capEff (bigint), umask");
		return NULL;
	}
	if (wearing) {
		napi_throw_error(env, NULL, "shimIdentityEnter: already wearing a caller's identity");
		return NULL;
	}
	gid_t *groups = calloc(ngroups ? ngroups : 1, sizeof *groups);
	int cur = getgroups(0, NULL);
	own.groups = calloc(cur > 0 ? (size_t)cur : 1, sizeof *own.groups);
	if (!groups || !own.groups || cur < 0) {
		free(groups);
		free(own.groups);
		own.groups = NULL;
		return result(env, -1);
	}
	for (uint32_t i = 0; i < ngroups; i++) {
		napi_value v;
		uint32_t g = 0;
		napi_get_element(env, argv[4], i, &v);
		get_u32(env, v, &g);
		groups[i] = g;
	}
	own.ngroups = getgroups(cur, own.groups);
	own.euid = geteuid();
	own.egid = getegid();
	own.dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
	own.fsuid = (uid_t)syscall(SYS_setfsuid, (uid_t)-1);
	own.fsgid = (gid_t)syscall(SYS_setfsgid, (gid_t)-1);
	cap_get(own.caps);
	own.umask = umask((mode_t)nmask & 0777);
	wearing = 1;

	int err = 0;
	if (set_groups((int)ngroups, groups))
		err = errno;
	if (!err && egid != own.egid)
		err = set_egid(egid);
	if (!err && euid != own.euid) {
		/* Leaving euid 0 clears the effective capabilities; the permitted stay. */
		err = set_euid(euid);
		if (!err && cap_set(own.caps))
			err = errno;
	}
	if (!err)
		err = set_fsgid(fsgid);
	if (!err)
		err = set_fsuid(fsuid);
	if (!err) {
		struct __user_cap_data_struct want[2] = { own.caps[0], own.caps[1] };
		want[0].effective = (uint32_t)cap_eff;
		want[1].effective = (uint32_t)(cap_eff >> 32);
		/* A capability the caller has and we lack cannot be worn. */
		if ((want[0].effective & ~want[0].permitted) || (want[1].effective & ~want[1].permitted))
			err = EPERM;
		else if (cap_set(want))
			err = errno;
	}
	free(groups);
	if (err)
		take_back();
	napi_value v;
	napi_create_int32(env, err, &v);
	return v;
}

/* shimIdentityLeave(): back to the supervisor's own identity (a no-op when not wearing one). */
napi_value js_shim_identity_leave(napi_env env, napi_callback_info info)
{
	(void)info;
	if (wearing)
		take_back();
	napi_value v;
	napi_get_undefined(env, &v);
	return v;
}

/* ---- inode flags for statx ------------------------------------------------ */

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>

/*
 * shimInodeFlags(path: string): the FS_IOC_GETFLAGS flags of the regular
 * file or directory `path` (opened read-only, non-blocking, without becoming
 * a controlling terminal), or -errno.
 */
napi_value js_shim_inode_flags(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1];
	char path[4200];
	size_t len = 0;
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
	    napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len >= sizeof path - 1) {
		napi_throw_type_error(env, NULL, "shimInodeFlags takes a path");
		return NULL;
	}
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return result(env, -1);
	int flags = 0;
	long r = ioctl(fd, FS_IOC_GETFLAGS, &flags);
	int err = errno;
	close(fd);
	errno = err;
	return result(env, r < 0 ? -1 : (long)(unsigned)flags);
}
