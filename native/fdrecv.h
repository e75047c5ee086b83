/*
 * One message from a local socket with at most one descriptor passed along
 * (SCM_RIGHTS), received close-on-exec and without blocking: shared by the
 * addon's control socket, the resident's connections and the vjail-run
 * front end (a static program, hence a header).
 */
#ifndef VJAIL_FDRECV_H
#define VJAIL_FDRECV_H

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

/* recvmsg's result (EINTR retried); *fd_out is the passed descriptor, or -1. */
static inline ssize_t vj_recv_with_fd(int sock, void *buf, size_t size, int *fd_out)
{
	struct iovec iov = { .iov_base = buf, .iov_len = size };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
	ssize_t n;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	*fd_out = -1;
	if (n > 0)
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
				memcpy(fd_out, CMSG_DATA(c), sizeof *fd_out);
	return n;
}

#endif
