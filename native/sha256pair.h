/* sha256 of two buffers at once, with the x86 SHA extensions (sha256pair.c). */
#ifndef VJAIL_SHA256PAIR_H
#define VJAIL_SHA256PAIR_H

#include <stddef.h>
#include <stdint.h>

/* Does this CPU have what vj_sha256_pair needs? */
int vj_sha256_pair_supported(void);

/* out[i] = sha256 of the len bytes at data[i], for i = 0, 1. Only where vj_sha256_pair_supported(). */
void vj_sha256_pair(const uint8_t *const data[2], size_t len, uint8_t out[2][32]);

#endif
