/* A child that shares our memory while we wait for it (clone with CLONE_VFORK). */
#ifndef VJAIL_VFORK_CLONE_H
#define VJAIL_VFORK_CLONE_H

#include <sys/types.h>

/*
 * Run fn(arg) in a child made by clone(CLONE_VM | CLONE_VFORK | SIGCHLD |
 * flags) on a stack of stack_size bytes; returns once it has exec'd or
 * exited: its pid (the caller reaps it), or -1 with errno. Every signal is
 * blocked in the calling thread meanwhile, so no handler of ours runs in
 * the child on the shared memory.
 */
pid_t vfork_clone(int (*fn)(void *), void *arg, int flags, size_t stack_size);

#endif
