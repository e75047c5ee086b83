/*
 * The floor for an intercepted syscall: the least a seccomp user-notify
 * supervisor can do. Forks, has the child install a filter that notifies
 * uname(2) only, receives the listener over a socket, then answers each
 * notification in a tight loop: write a fixed struct utsname into the
 * caller with process_vm_writev and send the reply. By default no poll, no
 * queue, no ID_VALID check (a real supervisor needs that check; see BENCH.md).
 *
 *   floor [--sync] [--poll] [--id-valid] [--handoff] [--open] [--spin] -- PROGRAM [ARG...]
 *
 * --sync sets SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP on the listener (Linux
 * 6.6+), so the kernel wakes the waiting side on the waker's CPU.
 * The other options add, one at a time, the steps vjail's supervisor takes,
 * so the bench can show what each costs:
 *   --poll      poll(2) the listener before each RECV
 *   --id-valid  SECCOMP_IOCTL_NOTIF_ID_VALID before writing into the caller
 *   --handoff   receive on a second thread and hand each notification to the
 *               main thread through a queue and an eventfd it epolls (as the
 *               native thread hands calls to JavaScript)
 *   --open      notify openat(2) instead of uname and answer it as the open
 *               shim does at the least: read the path from the caller, open
 *               the file, install it in the caller with ADDFD (flag SEND),
 *               close it (the floor of an open answered on the caller's behalf)
 *   --spin      for the whole run, a thread of the SCHED_IDLE class spins on
 *               each CPU, so that no CPU halts when idle (what vjail's
 *               supervisor does during bursts, native/keepawake.h, at most)
 * Exits with the program's status.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_ADDFD_FLAG_SEND
#define SECCOMP_ADDFD_FLAG_SEND (1UL << 1)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP 1UL
#endif

static pid_t child;
static int listener, opt_poll, opt_id_valid, opt_open;
static size_t nsize;
static struct utsname answer;

/* One-slot queue between the receiving thread and the answering thread. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t space = PTHREAD_COND_INITIALIZER;
static struct seccomp_notif *slot;
static int slot_full, wake_fd;

static void on_child(int sig)
{
	(void)sig;
	int st;
	if (waitpid(child, &st, WNOHANG) == child)
		_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

/* One byte of data and room for one SCM_RIGHTS fd. */
struct fd_msg {
	char byte;
	struct iovec iov;
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg;
};

static void fd_msg_init(struct fd_msg *m)
{
	memset(m, 0, sizeof *m);
	m->iov = (struct iovec){ .iov_base = &m->byte, .iov_len = 1 };
	m->msg = (struct msghdr){ .msg_iov = &m->iov, .msg_iovlen = 1, .msg_control = m->u.buf, .msg_controllen = sizeof m->u.buf };
}

static int send_fd(int sock, int fd)
{
	struct fd_msg m;
	fd_msg_init(&m);
	struct cmsghdr *c = CMSG_FIRSTHDR(&m.msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof fd);
	return sendmsg(sock, &m.msg, 0) == 1 ? 0 : -1;
}

static int recv_fd(int sock)
{
	struct fd_msg m;
	fd_msg_init(&m);
	if (recvmsg(sock, &m.msg, 0) != 1)
		return -1;
	struct cmsghdr *c = CMSG_FIRSTHDR(&m.msg);
	if (!c || c->cmsg_type != SCM_RIGHTS)
		return -1;
	int fd;
	memcpy(&fd, CMSG_DATA(c), sizeof fd);
	return fd;
}

static void run_child(int sock, char **argv)
{
	struct sock_filter insns[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, opt_open ? __NR_openat : __NR_uname, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof insns / sizeof insns[0], .filter = insns };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
		perror("floor: no_new_privs");
		_exit(127);
	}
	int fd = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
	if (fd < 0) {
		perror("floor: seccomp");
		_exit(127);
	}
	if (send_fd(sock, fd)) {
		perror("floor: sendmsg");
		_exit(127);
	}
	close(fd);
	/* Wait until the supervisor holds the listener and has set its flags. */
	char go;
	if (read(sock, &go, 1) != 1)
		_exit(127);
	close(sock);
	execvp(argv[0], argv);
	perror("floor: exec");
	_exit(127);
}

/* Spin on one CPU, never in another task's way, until the process exits. */
static void *spinner(void *arg)
{
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET((int)(intptr_t)arg, &one);
	struct sched_param sp = { .sched_priority = 0 };
	if (sched_setaffinity(0, sizeof one, &one) || pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp))
		return NULL;
	for (;;)
		__builtin_ia32_pause();
	return NULL;
}

static void start_spinners(void)
{
	cpu_set_t mine;
	if (sched_getaffinity(0, sizeof mine, &mine))
		return;
	/* SIGCHLD, which ends the run, must reach the main thread. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (int c = 0; c < CPU_SETSIZE; c++) {
		pthread_t t;
		if (CPU_ISSET(c, &mine) && pthread_create(&t, NULL, spinner, (void *)(intptr_t)c) == 0)
			pthread_detach(t);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Wait for the next notification: 0 when one arrived. */
static int receive(struct seccomp_notif *req)
{
	if (opt_poll) {
		struct pollfd p = { .fd = listener, .events = POLLIN };
		if (poll(&p, 1, -1) < 0)
			return -1;
	}
	memset(req, 0, nsize);
	if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, req)) {
		if (errno == EINTR || errno == ENOENT)
			return -1;
		perror("floor: SECCOMP_IOCTL_NOTIF_RECV");
		exit(1);
	}
	return 0;
}

/* Open the caller's path (openat from its cwd is out of scope: absolute paths only) and install it. */
static void respond_open(struct seccomp_notif *req)
{
	char path[256];
	struct iovec local = { .iov_base = path, .iov_len = sizeof path };
	struct iovec remote = { .iov_base = (void *)(uintptr_t)req->data.args[1], .iov_len = sizeof path };
	ssize_t n = process_vm_readv((pid_t)req->pid, &local, 1, &remote, 1, 0);
	int fd = -1;
	if (n > 0 && memchr(path, 0, (size_t)n) && path[0] == '/')
		fd = open(path, (int)req->data.args[2] | O_CLOEXEC);
	if (fd < 0) {
		struct seccomp_notif_resp resp = { .id = req->id, .val = 0, .error = -(errno ? errno : EFAULT) };
		ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
		return;
	}
	struct seccomp_notif_addfd add = {
		.id = req->id,
		.flags = SECCOMP_ADDFD_FLAG_SEND,
		.srcfd = (uint32_t)fd,
		.newfd_flags = ((int)req->data.args[2] & O_CLOEXEC) ? O_CLOEXEC : 0,
	};
	ioctl(listener, SECCOMP_IOCTL_NOTIF_ADDFD, &add);
	close(fd);
}

/* Write the fixed struct utsname into the caller and let it return 0. */
static void respond(struct seccomp_notif *req)
{
	if (opt_id_valid && ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &req->id))
		return;
	if (opt_open) {
		respond_open(req);
		return;
	}
	struct iovec local = { .iov_base = &answer, .iov_len = sizeof answer };
	struct iovec remote = { .iov_base = (void *)(uintptr_t)req->data.args[0], .iov_len = sizeof answer };
	ssize_t n = process_vm_writev((pid_t)req->pid, &local, 1, &remote, 1, 0);
	struct seccomp_notif_resp resp = { .id = req->id, .val = 0, .error = n == (ssize_t)sizeof answer ? 0 : -EFAULT };
	ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
}

static void *receiver(void *arg)
{
	(void)arg;
	struct seccomp_notif *req = calloc(1, nsize);
	for (;;) {
		if (receive(req))
			continue;
		pthread_mutex_lock(&mu);
		while (slot_full)
			pthread_cond_wait(&space, &mu);
		memcpy(slot, req, nsize);
		slot_full = 1;
		pthread_mutex_unlock(&mu);
		uint64_t one = 1;
		if (write(wake_fd, &one, sizeof one) < 0)
			exit(1);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int sync = 0, handoff = 0, spin = 0, i = 1;
	for (; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--sync"))
			sync = 1;
		else if (!strcmp(argv[i], "--poll"))
			opt_poll = 1;
		else if (!strcmp(argv[i], "--id-valid"))
			opt_id_valid = 1;
		else if (!strcmp(argv[i], "--handoff"))
			handoff = 1;
		else if (!strcmp(argv[i], "--open"))
			opt_open = 1;
		else if (!strcmp(argv[i], "--spin"))
			spin = 1;
		else {
			fprintf(stderr, "floor: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (i + 1 >= argc) {
		fprintf(stderr, "usage: floor [--sync] [--poll] [--id-valid] [--handoff] [--open] [--spin] -- PROGRAM [ARG...]\n");
		return 2;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) {
		perror("floor: socketpair");
		return 1;
	}
	struct sigaction sa = { .sa_handler = on_child }; /* no SA_RESTART: RECV returns EINTR */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGCHLD, &sa, NULL);
	child = fork();
	if (child < 0) {
		perror("floor: fork");
		return 1;
	}
	if (child == 0) {
		close(sv[0]);
		run_child(sv[1], argv + i + 1);
	}
	close(sv[1]);
	listener = recv_fd(sv[0]);
	if (listener < 0) {
		fprintf(stderr, "floor: no listener from the child\n");
		return 1;
	}
	if (sync && ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)) {
		perror("floor: SECCOMP_IOCTL_NOTIF_SET_FLAGS");
		return 1;
	}
	if (write(sv[0], "g", 1) != 1)
		return 1;
	close(sv[0]);

	memset(&answer, 0, sizeof answer);
	strcpy(answer.sysname, "Linux");
	strcpy(answer.nodename, "floor");
	strcpy(answer.release, "4.19.0-floor");
	strcpy(answer.version, "#1 SMP");
	strcpy(answer.machine, "x86_64");
	struct seccomp_notif_sizes sizes;
	if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes))
		return 1;
	nsize = sizes.seccomp_notif > sizeof(struct seccomp_notif) ? sizes.seccomp_notif : sizeof(struct seccomp_notif);
	struct seccomp_notif *req = calloc(1, nsize);
	if (spin)
		start_spinners();
	if (!handoff) {
		for (;;)
			if (receive(req) == 0)
				respond(req);
	}
	/* The receiving thread must not take the SIGCHLD that ends the run. */
	sigset_t chld, old;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	pthread_sigmask(SIG_BLOCK, &chld, &old);
	slot = calloc(1, nsize);
	wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	pthread_t t;
	if (pthread_create(&t, NULL, receiver, NULL))
		return 1;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN };
	epoll_ctl(ep, EPOLL_CTL_ADD, wake_fd, &ev);
	for (;;) {
		if (epoll_wait(ep, &ev, 1, -1) < 1)
			continue;
		uint64_t count;
		if (read(wake_fd, &count, sizeof count) < 0)
			continue;
		pthread_mutex_lock(&mu);
		int got = slot_full;
		if (got)
			memcpy(req, slot, nsize);
		slot_full = 0;
		pthread_cond_signal(&space);
		pthread_mutex_unlock(&mu);
		if (got)
			respond(req);
	}
}
