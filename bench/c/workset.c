/*
 * The workload of the checkpoint/restore rows: a working set of MIB MiB of
 * random data, every page touched, so every page is dumped.
 *
 *   workset DIR MIB [FDS]
 *
 * With FDS, it first opens that many descriptors of mixed kinds (a quarter
 * each: pipe ends with 16 bytes queued, eventfds, /dev/null, and DIR/file
 * at an offset), for the cost of descriptors in a checkpoint.
 *
 * Fills the memory (xoshiro256** seeded from getrandom: incompressible, and
 * much faster to make than getrandom for 1 GiB), prints "before HASH" on
 * stdout, then waits until DIR/go exists, prints "after HASH" of the memory
 * hashed again and exits 0. A restored copy that lost or changed a page
 * prints another hash. Output is written unbuffered, so nothing printed
 * before a checkpoint is in the image to be printed again.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static uint64_t s[4];

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t next(void)
{
	uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return r;
}

/* FNV-1a over 64-bit words. */
static uint64_t hash(const uint64_t *p, size_t words)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < words; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static int open_mixed(const char *dir, int n)
{
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < (rlim_t)n + 64) {
		rl.rlim_cur = rl.rlim_max < (rlim_t)n + 64 ? rl.rlim_max : (rlim_t)n + 64;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/file", dir);
	for (int i = 0; i < n;) {
		int p[2];
		switch (i % 4) {
		case 0:
			if (pipe(p) || write(p[1], "sixteen bytes...", 16) != 16)
				return -1;
			i += 2;
			continue;
		case 2:
			if (eventfd((unsigned)i, 0) < 0)
				return -1;
			break;
		case 3:
			if (open(i % 8 == 3 ? "/dev/null" : path, O_RDWR | O_CREAT, 0600) < 0)
				return -1;
			break;
		}
		i++;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3 && argc != 4) {
		fprintf(stderr, "usage: workset DIR MIB [FDS]\n");
		return 2;
	}
	if (argc == 4 && open_mixed(argv[1], atoi(argv[3]))) {
		perror("workset: opening descriptors");
		return 1;
	}
	size_t len = (size_t)strtoul(argv[2], NULL, 10) << 20;
	uint64_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("workset: mmap");
		return 1;
	}
	if (getrandom(s, sizeof s, 0) != sizeof s) {
		perror("workset: getrandom");
		return 1;
	}
	for (size_t i = 0; i < len / 8; i++)
		mem[i] = next();
	dprintf(1, "before %016" PRIx64 "\n", hash(mem, len / 8));
	char go[4096];
	snprintf(go, sizeof go, "%s/go", argv[1]);
	while (access(go, F_OK) != 0) {
		struct timespec ts = { 0, 5 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	dprintf(1, "after %016" PRIx64 "\n", hash(mem, len / 8));
	return 0;
}
