/*
 * Sockets for checkpoint: what the kernel tells of unix sockets through
 * sock_diag (NETLINK_SOCK_DIAG, unix_diag: each socket's peer, name,
 * queue lengths and a listener's pending connections), and a peek at one
 * queued message (its bytes, its sender's name and whether descriptors
 * ride with it) that leaves it queued.
 */

#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <string.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "napi_util.h"
#include "sockdiag.h"

static void set_value(napi_env env, napi_value obj, const char *key, napi_value v)
{
	napi_set_named_property(env, obj, key, v);
}

static napi_value make_bytes(napi_env env, const void *p, size_t len)
{
	void *data;
	napi_value buf;
	napi_create_buffer_copy(env, len, p, &data, &buf);
	return buf;
}

/* One unix_diag_msg as an object: ino, type, state, name (Buffer or null), peer, rqueue, wqueue, shutdown, icons. */
static napi_value unix_entry(napi_env env, struct nlmsghdr *h)
{
	struct unix_diag_msg *m = NLMSG_DATA(h);
	napi_value o, icons, null;
	napi_create_object(env, &o);
	napi_get_null(env, &null);
	napi_create_array(env, &icons);
	vj_set_number(env, o, "ino", m->udiag_ino);
	vj_set_number(env, o, "type", m->udiag_type);
	vj_set_number(env, o, "state", m->udiag_state);
	vj_set_number(env, o, "peer", 0);
	vj_set_number(env, o, "rqueue", 0);
	vj_set_number(env, o, "wqueue", 0);
	vj_set_number(env, o, "shutdown", 0);
	set_value(env, o, "name", null);
	int len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
	for (struct rtattr *a = (struct rtattr *)(m + 1); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		switch (a->rta_type) {
		case UNIX_DIAG_NAME:
			set_value(env, o, "name", make_bytes(env, RTA_DATA(a), RTA_PAYLOAD(a)));
			break;
		case UNIX_DIAG_PEER:
			vj_set_number(env, o, "peer", *(uint32_t *)RTA_DATA(a));
			break;
		case UNIX_DIAG_RQLEN: {
			struct unix_diag_rqlen *q = RTA_DATA(a);
			vj_set_number(env, o, "rqueue", q->udiag_rqueue);
			vj_set_number(env, o, "wqueue", q->udiag_wqueue);
			break;
		}
		case UNIX_DIAG_SHUTDOWN:
			vj_set_number(env, o, "shutdown", *(uint8_t *)RTA_DATA(a));
			break;
		case UNIX_DIAG_ICONS: {
			uint32_t *inos = RTA_DATA(a);
			for (size_t i = 0; i < RTA_PAYLOAD(a) / sizeof(uint32_t); i++) {
				napi_value v;
				napi_create_uint32(env, inos[i], &v);
				napi_set_element(env, icons, (uint32_t)i, v);
			}
			break;
		}
		}
	}
	set_value(env, o, "icons", icons);
	return o;
}

/* unixDiag(): every unix socket of this network namespace, as unix_entry describes it. */
napi_value js_unix_diag(napi_env env, napi_callback_info info)
{
	(void)info;
	int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl < 0)
		return vj_throw_errno(env, "socket(NETLINK_SOCK_DIAG)", errno);
	struct {
		struct nlmsghdr h;
		struct unix_diag_req r;
	} req;
	memset(&req, 0, sizeof req);
	req.h.nlmsg_len = sizeof req;
	req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	req.r.sdiag_family = AF_UNIX;
	req.r.udiag_states = ~0u;
	req.r.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN;
	if (send(nl, &req, sizeof req, 0) < 0) {
		int e = errno;
		close(nl);
		return vj_throw_errno(env, "sock_diag request", e);
	}
	napi_value out;
	napi_create_array(env, &out);
	uint32_t count = 0;
	size_t cap = 1 << 16;
	char *buf = malloc(cap);
	if (!buf) {
		close(nl);
		return vj_throw_errno(env, "sock_diag buffer", ENOMEM);
	}
	for (;;) {
		ssize_t n = recv(nl, buf, cap, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			free(buf);
			close(nl);
			return vj_throw_errno(env, "sock_diag reply", e);
		}
		int left = (int)n;
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
			if (h->nlmsg_type == NLMSG_DONE) {
				free(buf);
				close(nl);
				return out;
			}
			if (h->nlmsg_type == NLMSG_ERROR) {
				struct nlmsgerr *err = NLMSG_DATA(h);
				free(buf);
				close(nl);
				return vj_throw_errno(env, "sock_diag", err->error ? -err->error : EIO);
			}
			napi_set_element(env, out, count++, unix_entry(env, h));
		}
	}
}

/*
 * sockPeek(fd, max): the next queued message (or stream bytes) at the
 * socket's peek offset, left queued (MSG_PEEK; with SO_PEEK_OFF set the
 * offset moves past it): { data, name (the sender's address, Buffer),
 * rights (descriptors riding with it; our copies are closed) }, or null
 * when nothing more is queued.
 */
napi_value js_sock_peek(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	if (vj_args(env, info, 2, argv) < 0)
		return NULL;
	int fd = vj_i32(env, argv[0]);
	int max = vj_i32(env, argv[1]);
	if (max < 0)
		max = 0;
	char *data = malloc((size_t)max + 1);
	if (!data)
		return vj_throw_errno(env, "sockPeek buffer", ENOMEM);
	struct sockaddr_storage name;
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * 253)];
	} control;
	struct iovec iov = { .iov_base = data, .iov_len = (size_t)max };
	struct msghdr mh = { .msg_name = &name, .msg_namelen = sizeof name, .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = control.buf, .msg_controllen = sizeof control.buf };
	ssize_t n;
	do
		n = recvmsg(fd, &mh, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		int e = errno;
		free(data);
		if (e == EAGAIN) {
			napi_value null;
			napi_get_null(env, &null);
			return null;
		}
		return vj_throw_errno(env, "recvmsg(MSG_PEEK)", e);
	}
	int rights = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (int i = 0; i < k; i++) {
			int got;
			memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			close(got);
		}
		rights += k;
	}
	napi_value o;
	napi_create_object(env, &o);
	set_value(env, o, "data", make_bytes(env, data, (size_t)n));
	set_value(env, o, "name", make_bytes(env, &name, mh.msg_namelen <= sizeof name ? mh.msg_namelen : 0));
	vj_set_number(env, o, "rights", rights);
	vj_set_number(env, o, "truncated", (mh.msg_flags & MSG_TRUNC) != 0);
	free(data);
	return o;
}
