#include "caller.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* Fallback when process_vm_* is unavailable (seccomp'd supervisor, old kernel):
 * /proc/PID/mem can also write to read-only mappings, which process_vm_writev cannot. */
static int proc_mem(pid_t pid, uint64_t addr, void *buf, size_t len, int writing)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/mem", (int)pid);
	int fd = open(path, (writing ? O_WRONLY : O_RDONLY) | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? ESRCH : errno;
	ssize_t n = writing ? pwrite(fd, buf, len, (off_t)addr) : pread(fd, buf, len, (off_t)addr);
	int err = n < 0 ? (errno == EIO ? EFAULT : errno) : ((size_t)n == len ? 0 : EFAULT);
	close(fd);
	return err;
}

static int transfer(pid_t pid, uint64_t addr, void *buf, size_t len, int writing)
{
	if (len == 0)
		return 0;
	struct iovec local = { .iov_base = buf, .iov_len = len };
	struct iovec remote = { .iov_base = (void *)(uintptr_t)addr, .iov_len = len };
	ssize_t n = writing ? process_vm_writev(pid, &local, 1, &remote, 1, 0)
			    : process_vm_readv(pid, &local, 1, &remote, 1, 0);
	if (n < 0 && (errno == ENOSYS || errno == EPERM))
		return proc_mem(pid, addr, buf, len, writing);
	if (n < 0)
		return errno;
	return (size_t)n == len ? 0 : EFAULT;
}

int caller_read(pid_t pid, uint64_t addr, void *buf, size_t len)
{
	return transfer(pid, addr, buf, len, 0);
}

int caller_write(pid_t pid, uint64_t addr, const void *buf, size_t len)
{
	return transfer(pid, addr, (void *)buf, len, 1);
}

int caller_read_string(pid_t pid, uint64_t addr, char *buf, size_t max, size_t *out_len)
{
	const size_t page = 4096;
	size_t got = 0;
	if (max == 0)
		return ENAMETOOLONG;
	/*
	 * Read page by page: a string ending just before an unmapped page is
	 * valid. The first read takes at most a short path's worth, since most
	 * strings end well within it and a whole page costs more to copy.
	 */
	const size_t first = 256;
	while (got < max - 1) {
		uint64_t at = addr + got;
		size_t chunk = page - (size_t)(at % page);
		if (got == 0 && chunk > first)
			chunk = first;
		if (chunk > max - 1 - got)
			chunk = max - 1 - got;
		int err = caller_read(pid, at, buf + got, chunk);
		if (err)
			return err;
		char *nul = memchr(buf + got, 0, chunk);
		if (nul) {
			*out_len = (size_t)(nul - buf);
			return 0;
		}
		got += chunk;
	}
	buf[max - 1] = 0;
	return ENAMETOOLONG;
}
