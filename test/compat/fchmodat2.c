/*
 * fchmodat2 (Linux 6.6) is absent on a 6.1 kernel: under a profile from 6.6
 * on it works there only if vjail answers it itself (VJAIL_SHIMS). On a newer
 * kernel it works under profiles from 6.6 on; under older ones it is ENOSYS.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "compat.h"

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif

int main(void) {
  char path[] = "/tmp/vjail-compat-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) {
    perror("mkstemp");
    return 1;
  }
  close(fd);
  long ret = syscall(SYS_fchmodat2, AT_FDCWD, path, 0640, 0);
  int err = errno;
  struct stat st;
  int bad = ret == 0 && (stat(path, &st) != 0 || (st.st_mode & 0777) != 0640);
  unlink(path);
  if (bad) {
    printf("fchmodat2: returned 0 but the mode was not changed\n");
    return 1;
  }
  return expect_presence("fchmodat2", 6006, ret, err);
}
