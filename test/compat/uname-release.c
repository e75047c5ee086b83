/* uname(2) reports the release of the profile (the running kernel's for host). */
#include <sys/utsname.h>
#include "compat.h"

int main(void) {
  struct utsname u;
  if (uname(&u) != 0) {
    perror("uname");
    return 1;
  }
  const char *want = need_env("VJAIL_PROFILE_RELEASE");
  if (strcmp(u.release, want) != 0) {
    printf("uname: release %s, expected %s\n", u.release, want);
    return 1;
  }
  printf("uname: %s\n", u.release);
  return 0;
}
