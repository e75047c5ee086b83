/*
 * The calling thread's own capability sets, by raw system call: libc's
 * wrappers would act on every thread of the process, and the threads that
 * wear a caller's identity change only their own.
 */
#ifndef VJAIL_CAPS_H
#define VJAIL_CAPS_H

#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

static inline long cap_get(struct __user_cap_data_struct *d)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	return syscall(SYS_capget, &h, d);
}

static inline long cap_set(const struct __user_cap_data_struct *d)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	return syscall(SYS_capset, &h, d);
}

#endif
