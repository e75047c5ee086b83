/*
 * vjail-restorer: the empty shell a checkpoint is restored into.
 *
 * It is started like any workload (vjail-init installs the jail's seccomp
 * filter and execs it), then waits. The restore driver attaches with ptrace
 * and does most of the work by injecting system calls: it moves the vDSO to
 * the image's address, unmaps everything of ours, maps the image, writes its
 * pages, and finally loads the image's registers. Nothing here may depend on
 * libc or on its own memory surviving: it is gone when the image resumes.
 *
 * One routine runs here at the driver's request, before the memory is
 * replaced: restorer_install_fds puts the image's file descriptors in
 * place. The driver creates every open file description in its own process
 * and sends them over the socket vjail-init passed us (fd 4), one message
 * per step; this loop places each at its number, at native speed, and
 * stops at an int3 when told to, or at the first failure (rax: -errno,
 * rdi: the index of the step that failed).
 *
 * Linked static, without libc, at a high address (see binding.gyp) so that
 * it rarely sits where the image wants to be; when it does, nothing breaks,
 * since it only ever executes the code below before being replaced.
 */

#define NR_close 3
#define NR_pause 34
#define NR_recvmsg 47
#define NR_fcntl 72
#define NR_dup3 292

#define F_DUPFD_CLOEXEC 1030
#define O_CLOEXEC 02000000
#define SOL_SOCKET 1
#define SCM_RIGHTS 1
#define MSG_CMSG_CLOEXEC 0x40000000

typedef unsigned long size_t;

/* One step, as src/checkpoint/parts/fds/transfer.ts sends it. */
struct step {
	int op;
	int target;
	int arg;
	int flags;
};

enum {
	OP_MOVE_SOCK = 1, /* the socket moves to the lowest free fd >= arg */
	OP_INSTALL = 2,   /* the passed descriptor goes to target */
	OP_DUP = 3,       /* our fd arg goes to target */
	OP_CLOSE = 4,     /* close target */
	OP_DONE = 5,      /* stop; with FLAG_CLOSE_SOCK, close the socket first */
};
#define FLAG_CLOEXEC 1
#define FLAG_CLOSE_SOCK 2

struct iovec {
	void *base;
	size_t len;
};

struct msghdr {
	void *name;
	int namelen;
	struct iovec *iov;
	size_t iovlen;
	void *control;
	size_t controllen;
	int flags;
};

struct cmsghdr {
	size_t len;
	int level;
	int type;
	int fd; /* the data: one descriptor */
};

static long sys3(long nr, long a, long b, long c)
{
	long ret;
	__asm__ volatile("syscall" : "=a"(ret) : "0"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
	return ret;
}

/* Stop for the driver: int3 with rax = result and rdi = the step reached. */
static __attribute__((noreturn)) void stop(long result, long step)
{
	for (;;)
		__asm__ volatile("int3" : : "a"(result), "D"(step) : "memory");
}

__attribute__((noreturn, used)) void restorer_install_fds(long sock)
{
	for (long i = 0;; i++) {
		struct step s;
		struct cmsghdr c;
		struct iovec iov = { &s, sizeof s };
		struct msghdr mh = { 0, 0, &iov, 1, &c, sizeof c, 0 };
		c.len = 0;
		long n = sys3(NR_recvmsg, sock, (long)&mh, MSG_CMSG_CLOEXEC);
		if (n < 0)
			stop(n, i);
		if (n != sizeof s)
			stop(-22, i); /* EINVAL: a short step */
		long r = 0;
		long cloexec = (s.flags & FLAG_CLOEXEC) ? O_CLOEXEC : 0;
		switch (s.op) {
		case OP_MOVE_SOCK:
			r = sys3(NR_fcntl, sock, F_DUPFD_CLOEXEC, s.arg);
			if (r >= 0) {
				sys3(NR_close, sock, 0, 0);
				sock = r;
				r = 0;
			}
			break;
		case OP_INSTALL:
			if (mh.controllen < sizeof c || c.level != SOL_SOCKET || c.type != SCM_RIGHTS) {
				r = -22;
				break;
			}
			if (c.fd == s.target) {
				/* Received at its own number (always close-on-exec): set the flag as asked. */
				r = sys3(NR_fcntl, c.fd, 2 /* F_SETFD */, cloexec ? 1 : 0);
				break;
			}
			r = sys3(NR_dup3, c.fd, s.target, cloexec);
			sys3(NR_close, c.fd, 0, 0);
			break;
		case OP_DUP:
			r = s.arg == s.target ? 0 : sys3(NR_dup3, s.arg, s.target, cloexec);
			break;
		case OP_CLOSE:
			r = sys3(NR_close, s.target, 0, 0);
			break;
		case OP_DONE:
			if (s.flags & FLAG_CLOSE_SOCK)
				sys3(NR_close, sock, 0, 0);
			stop(0, i);
		default:
			r = -22;
		}
		if (r < 0)
			stop(r, i);
	}
}

__attribute__((noreturn, used)) void restorer_main(void)
{
	for (;;)
		sys3(NR_pause, 0, 0, 0);
}

__asm__(".globl _start\n"
	"_start:\n"
	"	xor %rbp, %rbp\n"
	"	and $-16, %rsp\n"
	"	call restorer_main\n"
	"	hlt\n");
