/*
 * vjail-restorer: the empty shell a checkpoint is restored into.
 *
 * It is started like any workload (vjail-init installs the jail's seccomp
 * filter and execs it), then waits. The restore driver attaches with ptrace
 * and does all the work by injecting system calls: it moves the vDSO to the
 * image's address, unmaps everything of ours, maps the image, writes its
 * pages, and finally loads the image's registers. Nothing here may depend on
 * libc or on its own memory surviving: it is gone when the image resumes.
 *
 * Linked static, without libc, at a high address (see binding.gyp) so that
 * it rarely sits where the image wants to be; when it does, nothing breaks,
 * since it only ever executes the loop below before being replaced.
 */

#define NR_pause 34

__attribute__((noreturn, used)) void restorer_main(void)
{
	for (;;) {
		long ret;
		__asm__ volatile("syscall" : "=a"(ret) : "0"((long)NR_pause) : "rcx", "r11", "memory");
		(void)ret;
	}
}

__asm__(".globl _start\n"
	"_start:\n"
	"	xor %rbp, %rbp\n"
	"	and $-16, %rsp\n"
	"	call restorer_main\n"
	"	hlt\n");
