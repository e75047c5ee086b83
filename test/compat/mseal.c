/*
 * mseal (Linux 6.10) is absent on a 6.1 kernel: callers get ENOSYS there
 * whatever the profile says, unless vjail answers it itself (VJAIL_SHIMS).
 * On a newer kernel it seals a fresh mapping under profiles from 6.10 on.
 */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "compat.h"

#ifndef SYS_mseal
#define SYS_mseal 462
#endif

int main(void) {
  long page = sysconf(_SC_PAGESIZE);
  void *p = mmap(NULL, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  long ret = syscall(SYS_mseal, p, page, 0);
  int err = errno;
  if (ret == 0 && munmap(p, page) == 0) {
    printf("mseal: the sealed mapping could still be unmapped\n");
    return 1;
  }
  return expect_presence("mseal", 6010, ret, err);
}
