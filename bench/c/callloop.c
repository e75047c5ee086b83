/*
 * Benchmark workload: make one syscall N times and print the mean cost per
 * call, timed from inside the process (so launcher and supervisor start-up
 * are not counted).
 *
 *   callloop uname|getppid|personality|prctl|open N
 *
 * open opens /etc/hostname read-only and closes it: close is never
 * intercepted, so a run through the open shim differs from a native one by
 * what the shim costs.
 *
 * Prints "ns_per_call <float>" and, for uname, "release <string>" so the
 * caller can check who answered.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Each loop is its own function so the timed loop has no dispatch in it. */
#define LOOP(name, expr)                                                                  \
	static long loop_##name(long n, struct utsname *u)                                \
	{                                                                                 \
		(void)u;                                                                  \
		long bad = 0;                                                             \
		for (long i = 0; i < n; i++)                                              \
			if ((expr) < 0)                                                   \
				bad++;                                                    \
		return bad;                                                               \
	}
LOOP(uname, syscall(SYS_uname, u))
LOOP(getppid, syscall(SYS_getppid))
/* 0xffffffff only queries the persona: cheap, and allowed by an argument rule in Docker's policy. */
LOOP(personality, syscall(SYS_personality, 0xffffffffUL))
LOOP(prctl, syscall(SYS_prctl, PR_GET_DUMPABLE, 0UL, 0UL, 0UL, 0UL))
LOOP(open, close((int)syscall(SYS_openat, AT_FDCWD, "/etc/hostname", O_RDONLY | O_CLOEXEC)))

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: callloop uname|getppid|personality|prctl|open N\n");
		return 2;
	}
	long (*fn)(long, struct utsname *) = NULL;
	if (!strcmp(argv[1], "uname"))
		fn = loop_uname;
	else if (!strcmp(argv[1], "getppid"))
		fn = loop_getppid;
	else if (!strcmp(argv[1], "personality"))
		fn = loop_personality;
	else if (!strcmp(argv[1], "prctl"))
		fn = loop_prctl;
	else if (!strcmp(argv[1], "open"))
		fn = loop_open;
	if (!fn) {
		fprintf(stderr, "callloop: unknown syscall %s\n", argv[1]);
		return 2;
	}
	long n = strtol(argv[2], NULL, 10);
	if (n < 1)
		n = 1;
	struct utsname u;
	memset(&u, 0, sizeof u);
	/* Warm up caches, the branch predictor and the supervisor. */
	if (fn(n / 10 + 1, &u) != 0) {
		fprintf(stderr, "callloop: %s failed: %s\n", argv[1], strerror(errno));
		return 1;
	}
	double t0 = now_ns();
	long bad = fn(n, &u);
	double t1 = now_ns();
	if (bad) {
		fprintf(stderr, "callloop: %ld of %ld %s calls failed\n", bad, n, argv[1]);
		return 1;
	}
	printf("ns_per_call %.3f\n", (t1 - t0) / (double)n);
	if (fn == loop_uname)
		printf("release %s\n", u.release);
	return 0;
}
