/*
 * Time namespaces (Linux 5.6+, CONFIG_TIME_NS): unshare(CLONE_NEWTIME) does
 * not move the caller; its children created afterwards are in the new
 * namespace. Until the first of them exists, the namespace's offsets can be
 * written to the caller's /proc/self/timens_offsets, one line per clock:
 * "monotonic SECS NSECS". See time_namespaces(7).
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "timens.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

#define NSEC_PER_SEC 1000000000ull

static int parse_ns(const char *s, char **end, unsigned long long *out)
{
	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	*out = strtoull(s, end, 10);
	return errno ? -1 : 0;
}

int enter_time_ns_for_children(const char *spec)
{
	unsigned long long mono, boot;
	char *end;
	if (parse_ns(spec, &end, &mono) || *end != ':' || parse_ns(end + 1, &end, &boot) || *end)
		return EINVAL;
	if (unshare(CLONE_NEWTIME))
		return errno;
	char text[128];
	int len = snprintf(text, sizeof text, "monotonic %llu %llu\nboottime %llu %llu\n",
			   mono / NSEC_PER_SEC, mono % NSEC_PER_SEC, boot / NSEC_PER_SEC, boot % NSEC_PER_SEC);
	int fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	int err = 0;
	if (write(fd, text, (size_t)len) != len)
		err = errno ? errno : EIO;
	close(fd);
	return err;
}
