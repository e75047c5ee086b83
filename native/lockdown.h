/*
 * lock_down: put the calling process (vjail-init, or PID 1 of --pid-ns, once
 * the workload is forked) out of the workload's reach. It cannot be dumped
 * (its /proc/PID/mem and ptrace closed to a workload without CAP_SYS_PTRACE),
 * and a seccomp filter of its own allows only the calls a reaper makes: what
 * a workload that can write its memory anyway (root) makes it run cannot
 * create, change or send anything the jail's policy would deny.
 */
#ifndef VJAIL_LOCKDOWN_H
#define VJAIL_LOCKDOWN_H

/* 0, or an errno. */
int lock_down(void);

#endif
