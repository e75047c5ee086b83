/*
 * Bandwidth a checkpoint or restore of SIZE MiB is bounded by.
 *
 *   bandwidth memcpy MIB         copy between two prefaulted buffers
 *   bandwidth write MIB DIR      write a file in DIR in 1 MiB writes, then fsync
 *
 * Prints "bytes_per_s <float>" (and for write also "cached_bytes_per_s",
 * the rate before fsync).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *region(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (p == MAP_FAILED) {
		perror("bandwidth: mmap");
		exit(1);
	}
	memset(p, 0x5a, len);
	return p;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: bandwidth memcpy MIB | bandwidth write MIB DIR\n");
		return 2;
	}
	size_t len = (size_t)strtoul(argv[2], NULL, 10) << 20;
	if (!strcmp(argv[1], "memcpy")) {
		char *src = region(len), *dst = region(len);
		double t0 = now_s();
		memcpy(dst, src, len);
		double t1 = now_s();
		/* Keep the copy observable so it is not optimised away. */
		if (dst[len - 1] != 0x5a)
			return 1;
		printf("bytes_per_s %.0f\n", (double)len / (t1 - t0));
		return 0;
	}
	if (!strcmp(argv[1], "write") && argc == 4) {
		const size_t chunk = 1 << 20;
		char *buf = region(chunk);
		char path[4096];
		snprintf(path, sizeof path, "%s/bandwidth-%d.tmp", argv[3], (int)getpid());
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0) {
			perror("bandwidth: open");
			return 1;
		}
		unlink(path);
		double t0 = now_s();
		for (size_t done = 0; done < len;) {
			ssize_t n = write(fd, buf, chunk);
			if (n <= 0) {
				perror("bandwidth: write");
				return 1;
			}
			done += (size_t)n;
		}
		double t1 = now_s();
		if (fsync(fd)) {
			perror("bandwidth: fsync");
			return 1;
		}
		double t2 = now_s();
		close(fd);
		printf("bytes_per_s %.0f\ncached_bytes_per_s %.0f\n", (double)len / (t2 - t0), (double)len / (t1 - t0));
		return 0;
	}
	fprintf(stderr, "bandwidth: unknown mode %s\n", argv[1]);
	return 2;
}
