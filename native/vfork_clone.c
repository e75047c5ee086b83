#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>

#include "vfork_clone.h"

pid_t vfork_clone(int (*fn)(void *), void *arg, int flags, size_t stack_size)
{
	char *stack = malloc(stack_size);
	if (!stack) {
		errno = ENOMEM;
		return -1;
	}
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid_t pid = clone(fn, stack + stack_size, CLONE_VM | CLONE_VFORK | SIGCHLD | flags, arg);
	int err = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	free(stack);
	errno = err;
	return pid;
}
