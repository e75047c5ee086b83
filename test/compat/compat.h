/*
 * Shared by vjail's compat fixtures. `vjail compat` tells each case which
 * profile it runs under and which kernel really runs it:
 *   VJAIL_PROFILE_KERNEL   the profile's kernel version ("4.4"; the running one for host)
 *   VJAIL_PROFILE_RELEASE  the `uname -r` the profile presents
 *   VJAIL_KERNEL_RELEASE   the real running kernel's release
 *   VJAIL_SHIMS            syscalls vjail can answer itself where the kernel lacks them
 * A fixture works out what it should see from these and exits 0 if it did.
 */
#ifndef VJAIL_COMPAT_H
#define VJAIL_COMPAT_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *need_env(const char *name) {
  const char *v = getenv(name);
  if (!v || !*v) {
    fprintf(stderr, "%s is not set; run this through vjail compat\n", name);
    exit(2);
  }
  return v;
}

/* MAJOR * 1000 + MINOR of a release such as "6.1.0-56-amd64". */
static long version_of(const char *release) {
  long major = 0, minor = 0;
  if (sscanf(release, "%ld.%ld", &major, &minor) != 2) {
    fprintf(stderr, "cannot read a kernel version from \"%s\"\n", release);
    exit(2);
  }
  return major * 1000 + minor;
}

static int shimmed(const char *name) {
  const char *list = getenv("VJAIL_SHIMS");
  size_t n = strlen(name);
  for (const char *p = list; p && *p;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len == n && strncmp(p, name, n) == 0) return 1;
    p = end ? end + 1 : NULL;
  }
  return 0;
}

/*
 * Compare a raw syscall's outcome with what should be: present (it returned
 * 0) when the profile has it (from `added` on) and either the running
 * kernel has it or vjail answers it; ENOSYS otherwise. Any other error is a
 * failure. Prints one line and returns the exit status.
 */
static int expect_presence(const char *name, long added, long ret, int err) {
  if (ret != 0 && err != ENOSYS) {
    printf("%s: failed with %s\n", name, strerror(err));
    return 1;
  }
  long profile_v = version_of(need_env("VJAIL_PROFILE_KERNEL"));
  long running_v = version_of(need_env("VJAIL_KERNEL_RELEASE"));
  int want = profile_v >= added && (running_v >= added || shimmed(name));
  int got = ret == 0;
  const char *profile = need_env("VJAIL_PROFILE_KERNEL"), *running = need_env("VJAIL_KERNEL_RELEASE");
  if (want != got) {
    printf("%s: %s under profile %s on %s, expected %s\n", name, got ? "present" : "ENOSYS", profile, running,
           want ? "present" : "ENOSYS");
    return 1;
  }
  printf("%s: %s under profile %s on %s, as expected\n", name, got ? "present" : "ENOSYS", profile, running);
  return 0;
}

#endif
