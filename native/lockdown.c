/* See lockdown.h. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lockdown.h"
#include "protocol.h"

#define NR_OFF offsetof(struct seccomp_data, nr)
#define ARCH_OFF offsetof(struct seccomp_data, arch)
/* The low 32 bits of argument i (little-endian x86-64). */
#define ARG_LO(i) (offsetof(struct seccomp_data, args) + (i) * 8)

#define LOAD(off) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (off))
#define ALLOW_IF(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)
#define RET(v) BPF_STMT(BPF_RET | BPF_K, (v))

/* The flags opendir("/proc") and open("/proc/PID/stat") use: read-only, nothing created. */
#define OPEN_DIR (O_RDONLY | O_DIRECTORY | O_NONBLOCK | O_CLOEXEC)
#define OPEN_FILE (O_RDONLY | O_CLOEXEC)

int lock_down(void)
{
	struct sock_filter insns[] = {
		LOAD(ARCH_OFF),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		RET(SECCOMP_RET_KILL_PROCESS),
		LOAD(NR_OFF),
		/* The x32 numbers alias the x86-64 ones with bit 30 set. */
		BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1),
		RET(SECCOMP_RET_KILL_PROCESS),
		/* Reaping and waiting. */
		ALLOW_IF(__NR_wait4),
		ALLOW_IF(__NR_rt_sigsuspend),
		ALLOW_IF(__NR_rt_sigreturn),
		ALLOW_IF(__NR_rt_sigprocmask),
		ALLOW_IF(__NR_getpid),
		ALLOW_IF(__NR_exit),
		ALLOW_IF(__NR_exit_group),
		/* Listing /proc to find the jail's processes. */
		ALLOW_IF(__NR_read),
		ALLOW_IF(__NR_close),
		ALLOW_IF(__NR_getdents64),
		ALLOW_IF(__NR_fstat),
		ALLOW_IF(__NR_newfstatat),
		ALLOW_IF(__NR_brk),
		ALLOW_IF(__NR_mmap),
		ALLOW_IF(__NR_munmap),
		/* openat: read-only flags only. */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_openat, 0, 4),
		LOAD(ARG_LO(2)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, OPEN_DIR, 1, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, OPEN_FILE, 0, 1),
		RET(SECCOMP_RET_ALLOW),
		LOAD(NR_OFF),
		/* kill: SIGKILL only (ending the jail). */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_kill, 0, 3),
		LOAD(ARG_LO(1)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SIGKILL, 0, 1),
		RET(SECCOMP_RET_ALLOW),
		LOAD(NR_OFF),
		/* send on the control socket only (the exit status). */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_sendto, 0, 3),
		LOAD(ARG_LO(0)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, VJAIL_CTL_FD, 0, 1),
		RET(SECCOMP_RET_ALLOW),
		RET(SECCOMP_RET_KILL_PROCESS),
	};
	struct sock_fprog prog = { .len = sizeof insns / sizeof insns[0], .filter = insns };
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0))
		return errno;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return errno;
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog))
		return errno;
	return 0;
}
