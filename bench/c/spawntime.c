/*
 * Wall time from spawning a program to reaping it, N times in a row.
 *
 *   spawntime N -- PROGRAM [ARG...]
 *
 * Prints one line per run, "ns <integer>"; the program's stdout and stderr
 * go to /dev/null. Fails if the program does not exit 0.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc < 4 || strcmp(argv[2], "--")) {
		fprintf(stderr, "usage: spawntime N -- PROGRAM [ARG...]\n");
		return 2;
	}
	long n = strtol(argv[1], NULL, 10);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	for (long i = 0; i < n; i++) {
		pid_t pid;
		long long t0 = now_ns();
		int err = posix_spawnp(&pid, argv[3], &fa, NULL, argv + 3, environ);
		if (err) {
			fprintf(stderr, "spawntime: cannot run %s: %s\n", argv[3], strerror(err));
			return 1;
		}
		int st;
		if (waitpid(pid, &st, 0) < 0) {
			perror("spawntime: waitpid");
			return 1;
		}
		long long t1 = now_ns();
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "spawntime: %s ended with status 0x%x\n", argv[3], st);
			return 1;
		}
		printf("ns %lld\n", t1 - t0);
	}
	return 0;
}
