/* statx (Linux 4.11) works under profiles from 4.11 on, and is ENOSYS under older ones (linux-4.4). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/stat.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "compat.h"

int main(void) {
  struct statx stx;
  memset(&stx, 0, sizeof stx);
  long ret = syscall(SYS_statx, AT_FDCWD, "/", 0, STATX_BASIC_STATS, &stx);
  int err = errno;
  if (ret == 0) {
    struct stat st;
    if (stat("/", &st) != 0 || st.st_ino != stx.stx_ino) {
      printf("statx: inode of / is %llu, stat says %llu\n", (unsigned long long)stx.stx_ino, (unsigned long long)st.st_ino);
      return 1;
    }
  }
  return expect_presence("statx", 4011, ret, err);
}
