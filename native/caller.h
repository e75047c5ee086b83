/* Access to a jailed caller's memory, for the supervisor. */
#ifndef VJAIL_CALLER_H
#define VJAIL_CALLER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Each returns 0 on success or a positive errno. A short transfer is EFAULT. */
int caller_read(pid_t pid, uint64_t addr, void *buf, size_t len);
int caller_write(pid_t pid, uint64_t addr, const void *buf, size_t len);
/* Reads a NUL-terminated string of at most max-1 bytes into buf (NUL-terminated);
 * *out_len gets its length. ENAMETOOLONG if no NUL within max-1 bytes. */
int caller_read_string(pid_t pid, uint64_t addr, char *buf, size_t max, size_t *out_len);

#endif
