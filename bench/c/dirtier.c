/* A workload that keeps writing its memory: dirtier DIR MIB RATE fills MIB
 * MiB, prints "ready" to DIR/ready, then writes RATE MiB of its pages a
 * second (one page at a time, spread over the whole range) until killed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	size_t len = (size_t)atol(argv[2]) << 20, pages = len / PAGE;
	double rate = atof(argv[3]) * 256;
	uint8_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return 1;
	for (size_t i = 0; i < len; i += 8)
		*(uint64_t *)(mem + i) = i * 0x9e3779b97f4a7c15ull;
	char path[4096];
	snprintf(path, sizeof path, "%s/ready", argv[1]);
	FILE *f = fopen(path, "w");
	if (!f)
		return 1;
	fclose(f);
	uint64_t steps = 0;
	double t0 = now();
	for (;;) {
		while ((double)steps < (now() - t0) * rate) {
			uint64_t *w = (uint64_t *)(mem + ((steps * 0x9e3779b97f4a7c15ull) % pages) * PAGE);
			for (size_t i = 0; i < PAGE / 8; i++)
				w[i] += steps;
			steps++;
		}
		struct timespec ts = { 0, 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}
